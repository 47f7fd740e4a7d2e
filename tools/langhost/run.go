package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// userActionableExitCode is what pulumi-language-python-exec exits with after it
// has already shown the user the error: the CLI must then bail quietly.
const userActionableExitCode = 32

// Run executes a Pulumi program through pulumi-language-python-exec. The
// program's stdout and stderr are ours, which the CLI shows to the user.
func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	if info == nil {
		return nil, errors.New("RunRequest carries no program info: this host needs a Pulumi CLI v3.100 or newer")
	}
	if req.GetAttachDebugger() {
		return nil, errors.New("attaching a debugger is not supported by this host")
	}
	python, err := h.interpreterFor(info, os.Environ())
	if err != nil {
		return nil, err
	}
	// The SDK wants a JSON object and array here, never null.
	config, err := json.Marshal(nonNil(req.GetConfig()))
	if err != nil {
		return nil, fmt.Errorf("serializing config: %w", err)
	}
	secretKeys, err := json.Marshal(append([]string{}, req.GetConfigSecretKeys()...))
	if err != nil {
		return nil, fmt.Errorf("serializing secret config keys: %w", err)
	}

	ctx, release := h.scope(ctx)
	defer release()
	cmd := h.command(ctx, python, execArgs(h.execScript, h.engine(), h.tracing, req)...)
	cmd.Env = append(cmd.Env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys))
	cmd.Dir = req.GetPwd()
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	return runResponse(cmd.Run()), nil
}

// execArgs is the interpreter's command line: the exec script, its flags, then
// the program and its arguments.
func execArgs(execScript, engine, tracing string, req *pulumirpc.RunRequest) []string {
	args := []string{"-u", execScript,
		"--monitor", req.GetMonitorAddress(),
		"--engine", engine,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--dry_run", strconv.FormatBool(req.GetDryRun()),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
	}
	optional := [][2]string{
		{"--organization", req.GetOrganization()},
		{"--root_directory", req.GetInfo().GetRootDirectory()},
		{"--tracing", tracing},
	}
	for _, flag := range optional {
		if flag[1] != "" {
			args = append(args, flag[0], flag[1])
		}
	}
	info := req.GetInfo()
	args = append(args, filepath.Join(info.GetProgramDirectory(), info.GetEntryPoint()))
	return append(args, req.GetArgs()...)
}

// runResponse turns the exec script's exit into what the CLI expects: nothing on
// success, Bail when the script already reported the error, else an error text.
func runResponse(err error) *pulumirpc.RunResponse {
	if err == nil {
		return &pulumirpc.RunResponse{}
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run the Python program: %v", err)}
	}
	if exit.ExitCode() == userActionableExitCode {
		return &pulumirpc.RunResponse{Bail: true}
	}
	return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exit.ExitCode())}
}

// nonNil returns m, or an empty map when m is nil, so it marshals as {}.
func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
