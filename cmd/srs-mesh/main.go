// Command srs-mesh runs and inspects an srs-mesh node: a proxy for SRS origin
// clusters whose nodes agree on stream placement with Raft and find each
// other by gossip.
//
// Flags and SRS_MESH_* environment variables are read here and nowhere else.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Set by the linker: -ldflags "-X main.version=v1.2.3 -X main.commit=abc".
// Without them, the version and revision come from the build information Go
// stamps into the binary (readBuildInfo).
var (
	version = "dev"
	commit  = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "srs-mesh",
		Short: "A proxy mesh for SRS origin clusters (RTMP, HTTP-FLV, HLS, DASH, SRT, WebRTC)",
		Long: `srs-mesh sits in front of a cluster of SRS origins. Clients connect to any
node; the node finds the origin that owns the stream and relays to it. Nodes
agree on stream placement with Raft and find each other by gossip.`,
		SilenceUsage: true,
		Version:      readBuildInfo().String(),
		// A misspelled command gets "Did you mean this?".
		SuggestionsMinimumDistance: 2,
	}
	root.SetVersionTemplate("srs-mesh {{.Version}}\n")
	root.SetFlagErrorFunc(suggestFlag)
	root.AddCommand(newServeCmd(), newTLSCmd(), newStatusCmd(), newOriginsCmd(), newStreamsCmd(),
		newDrainCmd(true), newDrainCmd(false), newDemoCmd(), newBenchCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go release of this binary",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "srs-mesh %s\n", readBuildInfo())
		},
	}
}
