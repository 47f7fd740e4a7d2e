package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

func programInfo(t *testing.T, root string, options map[string]any) *pulumirpc.ProgramInfo {
	t.Helper()
	opts, err := structpb.NewStruct(options)
	if err != nil {
		t.Fatal(err)
	}
	return &pulumirpc.ProgramInfo{RootDirectory: root, ProgramDirectory: root, EntryPoint: ".", Options: opts}
}

// fakeVenv creates root/<name>/bin/python as an executable file.
func fakeVenv(t *testing.T, root, name string) string {
	t.Helper()
	bin := filepath.Join(root, name, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "python"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, name)
}

func TestParseOptionsAcceptsPipAndVirtualenv(t *testing.T) {
	opts, err := parseOptions(programInfo(t, "/p", map[string]any{"toolchain": "pip", "virtualenv": ".venv"}))
	if err != nil || opts.Virtualenv != ".venv" {
		t.Fatalf("got %+v, %v", opts, err)
	}
}

func TestParseOptionsRefusesWhatItCannotHonour(t *testing.T) {
	for _, options := range []map[string]any{
		{"toolchain": "uv"},
		{"typechecker": "mypy"},
		{"virtualenv": true},
	} {
		if _, err := parseOptions(programInfo(t, "/p", options)); err == nil {
			t.Errorf("options %v: expected an error", options)
		}
	}
}

func TestParseOptionsWithoutOptions(t *testing.T) {
	opts, err := parseOptions(&pulumirpc.ProgramInfo{RootDirectory: "/p"})
	if err != nil || opts.Virtualenv != "" {
		t.Fatalf("got %+v, %v", opts, err)
	}
}

func TestResolveInterpreterRelativeVirtualenvIsUnderRoot(t *testing.T) {
	root := t.TempDir()
	venv := fakeVenv(t, root, ".venv")
	py, err := resolveInterpreter(root, runtimeOptions{Virtualenv: ".venv"}, []string{"PULUMI_PYTHON_CMD=/nope"})
	if err != nil {
		t.Fatal(err)
	}
	if py.Path != filepath.Join(venv, "bin", "python") || py.Venv != venv {
		t.Fatalf("got %+v", py)
	}
}

func TestResolveInterpreterMissingVirtualenvNamesBootstrap(t *testing.T) {
	_, err := resolveInterpreter(t.TempDir(), runtimeOptions{Virtualenv: "venv"}, nil)
	if err == nil || !strings.Contains(err.Error(), "make bootstrap") {
		t.Fatalf("got %v", err)
	}
}

func TestResolveInterpreterUsesPulumiPythonCmdLastValue(t *testing.T) {
	venv := fakeVenv(t, t.TempDir(), "v")
	want := filepath.Join(venv, "bin", "python")
	py, err := resolveInterpreter("/p", runtimeOptions{}, []string{"PULUMI_PYTHON_CMD=/nope", "PULUMI_PYTHON_CMD=" + want})
	if err != nil || py.Path != want || py.Venv != "" {
		t.Fatalf("got %+v, %v", py, err)
	}
}

func TestEnvironActivatesVirtualenv(t *testing.T) {
	py := interpreter{Path: "/v/bin/python", Venv: "/v"}
	env := py.environ([]string{"PATH=/usr/bin", "PYTHONHOME=/x", "VIRTUAL_ENV=/old", "KEEP=1"})
	want := []string{"KEEP=1", "PATH=/v/bin:/usr/bin", "VIRTUAL_ENV=/v"}
	if !slices.Equal(env, want) {
		t.Fatalf("got %v, want %v", env, want)
	}
}

func TestEnvironLeavesAmbientPythonAlone(t *testing.T) {
	env := []string{"PATH=/usr/bin", "PYTHONHOME=/x"}
	if got := (interpreter{Path: "/usr/bin/python3"}).environ(env); !slices.Equal(got, env) {
		t.Fatalf("got %v", got)
	}
}
