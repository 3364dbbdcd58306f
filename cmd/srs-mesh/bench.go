package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/srs-mesh/srs-mesh/loadclient"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load tools to size a node",
	}
	cmd.AddCommand(newBenchPlayCmd())
	return cmd
}

func newBenchPlayCmd() *cobra.Command {
	var (
		cfg       loadclient.Config
		asJSON    bool
		perPlayer bool
	)
	cmd := &cobra.Command{
		Use:   "play URL",
		Short: "Play one stream with many players (RTMP, HTTP-FLV, HLS, WHEP) and report what they saw",
		Long: `play starts -n players of URL (rtmp://, http(s)://....flv, http(s)://....m3u8, or
a WHEP endpoint: an http(s) URL with whep in its path) at --rate players a second, lets them play for --duration once the last one
started, and prints a summary: players connected and failed (with why), bytes,
frames per second, stalled players and the longest stall. Every player parses
what it receives (RTMP messages, FLV tags, HLS playlists and TS packets, RTP
packets), so a broken or stalled player is counted. Progress is printed to stderr every
--progress.

Each player holds a file descriptor: the process's soft limit is raised to its
hard limit at start (ulimit -Hn) and printed; past it, players fail to connect
("too many open files") and are counted as failed.`,
		Example: `  srs-mesh bench play rtmp://127.0.0.1:1935/live/livestream -n 1000 --duration 30s
  srs-mesh bench play http://127.0.0.1:8080/live/livestream.flv -n 1000 --rate 500
  srs-mesh bench play http://127.0.0.1:8080/live/livestream.m3u8 -n 200 --json
  srs-mesh bench play 'http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream=livestream' -n 50`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.URL = args[0]
			if _, err := loadclient.Protocol(cfg.URL); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if soft, hard, err := fileLimit(); err == nil {
				log.Info("file descriptors", "soft", soft, "hard", hard)
				if soft < uint64(cfg.Players)+64 {
					log.Warn("fewer file descriptors than players: raise the hard limit (ulimit -Hn) to run them all",
						"players", cfg.Players, "limit", soft)
				}
			}
			cfg.Log = log
			cfg.Progress = func(s loadclient.Summary) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d/%d started, %d connected, %d failed, %.1f Mbit/s, %.0f frames/s, %d stalled, longest stall %v\n",
					s.Elapsed.Round(time.Second), s.Started, s.Players, s.Connected, s.Failed, s.Mbps, s.FramesPerSecond,
					s.Stalled, s.LongestStall.Round(time.Millisecond))
			}
			sum, err := loadclient.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if !perPlayer {
				sum.PerPlayer = nil
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			fmt.Fprint(cmd.OutOrStdout(), sum.String())
			if perPlayer {
				fmt.Fprintln(cmd.OutOrStdout(), "player\tconnected\tbytes\tframes\tstalls\tlongest_gap\terror")
				for _, p := range sum.PerPlayer {
					fmt.Fprintf(cmd.OutOrStdout(), "%d\t%v\t%d\t%d\t%d\t%v\t%s\n", p.ID, p.Connected, p.Bytes, p.Frames, p.Stalls,
						p.Longest.Round(time.Millisecond), p.Err)
				}
			}
			if sum.Connected == 0 {
				return exitError{code: 2, err: fmt.Errorf("no player received media")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&cfg.Players, "players", "n", 1, "players to run (at most 100000)")
	f.Float64Var(&cfg.Rate, "rate", loadclient.DefaultRate, "players started per second")
	f.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to play once the last player started (0: until interrupted)")
	f.DurationVar(&cfg.ConnectTimeout, "connect-timeout", loadclient.DefaultConnectTimeout, "a player's set-up, up to its first media")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", loadclient.DefaultIdleTimeout, "a player that receives nothing for so long fails")
	f.DurationVar(&cfg.StallGap, "stall", loadclient.DefaultStallGap, "a gap between frames longer than this is a stall (HLS: a wait with nothing buffered)")
	f.DurationVar(&cfg.ProgressEvery, "progress", loadclient.DefaultProgressEvery, "how often to print progress to stderr")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	f.BoolVar(&perPlayer, "per-player", false, "also print every player's bytes, frames and stalls")
	return cmd
}
