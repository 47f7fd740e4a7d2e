// Command pulumi-language-python is multicloud-transit's own language host for
// the Pulumi runtime "python".
//
// Why it exists: Pulumi's host module is refused by the Go module proxy at every
// version, so the CLI built from Go modules has no Python host. This one speaks
// the LanguageRuntime gRPC protocol and hands the real work to the Python shims
// that ship in the sdk/v3 module (pulumi-language-python-exec) and in the
// pulumi and pulumi-policy wheels. See README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// execScriptName is the shim that runs a program; it must sit next to this binary.
const execScriptName = "pulumi-language-python-exec"

func main() {
	if err := serve(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}
}

// serve parses the arguments the CLI passes to every plugin, starts the gRPC
// server and prints its port: the CLI reads that first stdout line to dial us.
func serve(argv []string) error {
	flags := flag.NewFlagSet("pulumi-language-python", flag.ContinueOnError)
	tracing := flags.String("tracing", "", "Zipkin-compatible tracing endpoint, passed on to programs")
	// The CLI forwards its logging flags to every plugin; they are accepted so
	// parsing never fails, and this host has no logs of its own to tune.
	flags.Bool("logtostderr", false, "accepted for compatibility with the CLI's plugin arguments")
	flags.Bool("logflow", false, "accepted for compatibility with the CLI's plugin arguments")
	flags.Int("v", 0, "accepted for compatibility with the CLI's plugin arguments")
	if err := flags.Parse(argv); err != nil {
		return err
	}
	engineAddress := ""
	if flags.NArg() > 0 {
		engineAddress = flags.Arg(0)
	}

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating this executable: %w", err)
	}
	execScript := filepath.Join(filepath.Dir(self), execScriptName)
	if _, err := os.Stat(execScript); err != nil {
		return fmt.Errorf("missing executor %s (tools/build-pulumi.sh installs it): %w", execScript, err)
	}

	host := newHost(execScript, engineAddress, *tracing)
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("starting the gRPC server: %w", err)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		return fmt.Errorf("gRPC server stopped: %w", err)
	}
	return nil
}
