package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// runtimeOptions are the `runtime.options` of Pulumi.yaml or PulumiPolicy.yaml
// that this host understands.
type runtimeOptions struct {
	// Virtualenv is the virtual environment directory, relative to the project root.
	Virtualenv string
}

// parseOptions reads the runtime options and refuses the ones this host does not
// implement, so a project never silently runs with a different toolchain.
func parseOptions(info *pulumirpc.ProgramInfo) (runtimeOptions, error) {
	var opts runtimeOptions
	for key, value := range info.GetOptions().AsMap() {
		text, ok := value.(string)
		if !ok {
			return opts, fmt.Errorf("runtime option %q must be a string, got %v", key, value)
		}
		switch key {
		case "virtualenv":
			opts.Virtualenv = text
		case "toolchain":
			if text != "pip" {
				return opts, fmt.Errorf("runtime option toolchain=%q is not supported by this host: use pip", text)
			}
		default:
			return opts, fmt.Errorf("runtime option %q is not supported by this host", key)
		}
	}
	return opts, nil
}

// interpreter is the Python that runs a program or a plugin.
type interpreter struct {
	// Path is the python executable.
	Path string
	// Venv is the virtual environment it belongs to, empty for an ambient Python.
	Venv string
}

// resolveInterpreter picks the Python the same way Pulumi's host does: the
// project's virtualenv option, else PULUMI_PYTHON_CMD, else python3. env is the
// environment the child will get, so per-request variables are honoured.
func resolveInterpreter(root string, opts runtimeOptions, env []string) (interpreter, error) {
	if opts.Virtualenv != "" {
		venv := opts.Virtualenv
		if !filepath.IsAbs(venv) {
			venv = filepath.Join(root, venv)
		}
		python := filepath.Join(venv, "bin", "python")
		if _, err := exec.LookPath(python); err != nil {
			return interpreter{}, fmt.Errorf(
				"the virtualenv option is %q but %s is not an executable python (run `make bootstrap`): %w",
				opts.Virtualenv, python, err)
		}
		return interpreter{Path: python, Venv: venv}, nil
	}
	command := lookupEnv(env, "PULUMI_PYTHON_CMD")
	if command == "" {
		command = "python3"
	}
	python, err := exec.LookPath(command)
	if err != nil {
		return interpreter{}, fmt.Errorf("no python interpreter %q on PATH (set PULUMI_PYTHON_CMD or the virtualenv option): %w",
			command, err)
	}
	return interpreter{Path: python}, nil
}

// environ returns env adjusted to run inside the interpreter's virtualenv, as
// `activate` would: VIRTUAL_ENV set, its bin first on PATH, PYTHONHOME unset.
func (i interpreter) environ(env []string) []string {
	if i.Venv == "" {
		return env
	}
	out := make([]string, 0, len(env)+2)
	path := ""
	for _, kv := range env {
		key, value, _ := strings.Cut(kv, "=")
		switch key {
		case "PATH":
			path = value
		case "PYTHONHOME", "VIRTUAL_ENV":
		default:
			out = append(out, kv)
		}
	}
	bin := filepath.Join(i.Venv, "bin")
	if path != "" {
		bin += string(filepath.ListSeparator) + path
	}
	return append(out, "PATH="+bin, "VIRTUAL_ENV="+i.Venv)
}

// lookupEnv returns the last value of key in env (later entries win, as in exec).
func lookupEnv(env []string, key string) string {
	value := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value = v
		}
	}
	return value
}
