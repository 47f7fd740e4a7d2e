package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Version is what GetPluginInfo reports: this host's own version, never Pulumi's.
const Version = "0.1.0-transit"

// interruptGrace is how long a child gets after SIGINT before it is killed.
const interruptGrace = 5 * time.Second

// host implements the LanguageRuntime service for Python programs and policy packs.
type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	execScript string
	tracing    string

	mu            sync.Mutex
	engineAddress string

	// cancelled is closed by Cancel; every child process is interrupted then.
	cancelled context.Context
	cancel    context.CancelFunc
}

func newHost(execScript, engineAddress, tracing string) *host {
	cancelled, cancel := context.WithCancel(context.Background())
	return &host{
		execScript:    execScript,
		engineAddress: engineAddress,
		tracing:       tracing,
		cancelled:     cancelled,
		cancel:        cancel,
	}
}

// Handshake records the engine address when the CLI sends one.
func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.mu.Lock()
		h.engineAddress = req.GetEngineAddress()
		h.mu.Unlock()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

// GetPluginInfo reports this host's own version.
func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

// GetRequiredPlugins reports none: plugins load on demand when a resource needs one.
func (h *host) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// GetRequiredPackages reports none, for the same reason as GetRequiredPlugins.
func (h *host) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// InstallDependencies installs nothing: the project's virtualenv is built by
// `make bootstrap`. It still checks that the interpreter resolves, so
// `pulumi install` fails early when the virtualenv is missing.
func (h *host) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest,
	stream pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	python, err := h.interpreterFor(req.GetInfo(), os.Environ())
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("pulumi-language-python %s: dependencies are managed by `make bootstrap`; using %s\n",
		Version, python.Path)
	return stream.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(msg)})
}

// About names the interpreter and its version, for `pulumi about`.
func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	python, err := h.interpreterFor(req.GetInfo(), os.Environ())
	if err != nil {
		return nil, err
	}
	out, err := h.command(ctx, python, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", python.Path, err)
	}
	return &pulumirpc.AboutResponse{
		Executable: python.Path,
		Version:    strings.TrimSpace(strings.TrimPrefix(string(out), "Python ")),
		Metadata:   map[string]string{"host": "multicloud-transit " + Version},
	}, nil
}

// GetProgramDependencies lists the packages installed for the program's interpreter.
func (h *host) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	python, err := h.interpreterFor(req.GetInfo(), os.Environ())
	if err != nil {
		return nil, err
	}
	out, err := h.command(ctx, python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -m pip list: %w", python.Path, err)
	}
	var packages []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(out, &packages); err != nil {
		return nil, fmt.Errorf("parsing pip list output: %w", err)
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(packages))
	for _, p := range packages {
		deps = append(deps, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// Cancel interrupts every running program and plugin; the host accepts no more work.
func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	h.cancel()
	return &emptypb.Empty{}, nil
}

// interpreterFor resolves the Python for a program or plugin described by info.
func (h *host) interpreterFor(info *pulumirpc.ProgramInfo, env []string) (interpreter, error) {
	opts, err := parseOptions(info)
	if err != nil {
		return interpreter{}, err
	}
	return resolveInterpreter(info.GetRootDirectory(), opts, env)
}

// scope returns a context that also ends when the host is cancelled; callers
// release it when their work is done.
func (h *host) scope(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stopWatching := context.AfterFunc(h.cancelled, cancel)
	return ctx, func() { stopWatching(); cancel() }
}

// command builds a child process in python's environment that is interrupted
// when ctx ends, and killed if it ignores the interrupt.
func (h *host) command(ctx context.Context, python interpreter, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, python.Path, args...)
	cmd.Env = python.environ(os.Environ())
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = interruptGrace
	return cmd
}
