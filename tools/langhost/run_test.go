package main

import (
	"os/exec"
	"slices"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func TestExecArgsMatchTheExecScript(t *testing.T) {
	req := &pulumirpc.RunRequest{
		MonitorAddress: "127.0.0.1:1", Project: "p", Stack: "s", Pwd: "/root/p",
		DryRun: true, Parallel: 4, Organization: "org", Args: []string{"a"},
		Info: &pulumirpc.ProgramInfo{RootDirectory: "/root/p", ProgramDirectory: "/root/p/stacks", EntryPoint: "."},
	}
	got := execArgs("/bin/exec", "127.0.0.1:2", "", req)
	want := []string{"-u", "/bin/exec",
		"--monitor", "127.0.0.1:1", "--engine", "127.0.0.1:2", "--project", "p", "--stack", "s",
		"--pwd", "/root/p", "--dry_run", "true", "--parallel", "4",
		"--organization", "org", "--root_directory", "/root/p", "/root/p/stacks", "a"}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestExecArgsEntryPointFileAndTracing(t *testing.T) {
	req := &pulumirpc.RunRequest{Info: &pulumirpc.ProgramInfo{ProgramDirectory: "/p", EntryPoint: "main.py"}}
	got := execArgs("/bin/exec", "e", "http://zipkin", req)
	if got[len(got)-1] != "/p/main.py" || !slices.Contains(got, "http://zipkin") || slices.Contains(got, "--organization") {
		t.Fatalf("got %v", got)
	}
}

func TestRunResponseMapsExitCodes(t *testing.T) {
	if r := runResponse(nil); r.Error != "" || r.Bail {
		t.Errorf("success: %v", r)
	}
	if r := runResponse(exec.Command("sh", "-c", "exit 32").Run()); !r.Bail || r.Error != "" {
		t.Errorf("exit 32: %v", r)
	}
	if r := runResponse(exec.Command("sh", "-c", "exit 3").Run()); r.Bail || r.Error != "Program exited with non-zero exit code: 3" {
		t.Errorf("exit 3: %v", r)
	}
	if r := runResponse(exec.Command("/nonexistent/python").Run()); r.Bail || r.Error == "" {
		t.Errorf("not started: %v", r)
	}
}
