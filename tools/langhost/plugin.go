package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// analyzerKind is the plugin kind the CLI (v3.222+) sends for a policy pack.
const analyzerKind = "analyzer"

// RunPlugin starts a Python policy pack as `python -u -m pulumi.policy <args>
// <packdir>` and streams its output back until it exits. The pack prints its
// gRPC port on stdout, which the CLI reads from this stream.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, stream pulumirpc.LanguageRuntime_RunPluginServer) error {
	if req.GetKind() != analyzerKind {
		return fmt.Errorf("this host runs only policy packs (kind %q), not %q plugins", analyzerKind, req.GetKind())
	}
	if req.GetAttachDebugger() {
		return errors.New("attaching a debugger is not supported by this host")
	}
	// The CLI sends the plugin's whole environment; an empty one means ours.
	env := req.GetEnv()
	if len(env) == 0 {
		env = os.Environ()
	}
	info := req.GetInfo()
	python, err := h.interpreterFor(info, env)
	if err != nil {
		return err
	}

	ctx, release := h.scope(stream.Context())
	defer release()
	args := append([]string{"-u", "-m", "pulumi.policy"}, req.GetArgs()...)
	cmd := h.command(ctx, python, append(args, info.GetProgramDirectory())...)
	cmd.Env = python.environ(env)
	cmd.Dir = req.GetPwd()

	out := &streamSender{stream: stream}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting policy pack %s: %w", info.GetProgramDirectory(), err)
	}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go out.pump(stdout, &pumps, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}}
	})
	go out.pump(stderr, &pumps, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}}
	})
	pumps.Wait()

	code := int32(0)
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return fmt.Errorf("policy pack %s: %w", info.GetProgramDirectory(), err)
		}
		code = int32(exit.ExitCode())
	}
	if err := out.firstError(); err != nil {
		return err
	}
	return stream.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: code}})
}

// streamSender serializes sends from the stdout and stderr pumps: a gRPC stream
// must not be written from two goroutines at once.
type streamSender struct {
	mu     sync.Mutex
	stream pulumirpc.LanguageRuntime_RunPluginServer
	err    error
}

// pump copies r to the stream chunk by chunk until EOF. After a send error it
// keeps draining r so the child never blocks on a full pipe.
func (s *streamSender) pump(r io.Reader, done *sync.WaitGroup, wrap func([]byte) *pulumirpc.RunPluginResponse) {
	defer done.Done()
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.send(wrap(append([]byte(nil), buf[:n]...)))
		}
		if err != nil {
			return
		}
	}
}

func (s *streamSender) send(msg *pulumirpc.RunPluginResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = s.stream.Send(msg)
	}
}

func (s *streamSender) firstError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
