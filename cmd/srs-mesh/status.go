package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/srs-mesh/srs-mesh/mesh"
)

// clientOptions are the flags shared by the commands that talk to a node's
// system API.
type clientOptions struct {
	addr    string
	json    bool
	token   string
	timeout time.Duration
}

func (c *clientOptions) register(cmd *cobra.Command) {
	def := "http://127.0.0.1:12025"
	if v, ok := os.LookupEnv(envPrefix + "ADDR"); ok && v != "" {
		def = v
	}
	cmd.Flags().StringVar(&c.addr, "addr", def, "system API of any node (env SRS_MESH_ADDR)")
	cmd.Flags().BoolVar(&c.json, "json", false, "print the JSON document instead of a table")
	cmd.Flags().DurationVar(&c.timeout, "timeout", 5*time.Second, "request timeout")
}

func (c *clientOptions) baseURL() string {
	a := strings.TrimRight(c.addr, "/")
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	return a
}

// getStatus fetches the cluster status document from a node.
func (c *clientOptions) getStatus(ctx context.Context) (mesh.Status, []byte, error) {
	var st mesh.Status
	body, err := c.do(ctx, http.MethodGet, "/mesh/v1/status")
	if err != nil {
		return st, nil, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, nil, fmt.Errorf("bad status document from %s: %w", c.addr, err)
	}
	return st, body, nil
}

func (c *clientOptions) do(ctx context.Context, method, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL()+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Message)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return body, nil
}

func newStatusCmd() *cobra.Command {
	var c clientOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the mesh: members, leader, Raft indexes, origins and stream assignments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, raw, err := c.getStatus(cmd.Context())
			if err != nil {
				return err
			}
			if c.json {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			w := cmd.OutOrStdout()
			printSummary(w, st)
			fmt.Fprintln(w)
			printMembers(w, st)
			fmt.Fprintln(w)
			printOrigins(w, st, time.Now())
			fmt.Fprintln(w)
			printAssignments(w, st, time.Now())
			return nil
		},
	}
	c.register(cmd)
	return cmd
}

func newOriginsCmd() *cobra.Command {
	var c clientOptions
	cmd := &cobra.Command{
		Use:   "origins",
		Short: "List origins with health, load and draining state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := c.getStatus(cmd.Context())
			if err != nil {
				return err
			}
			if c.json {
				return writeJSON(cmd.OutOrStdout(), st.Origins)
			}
			printOrigins(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
	c.register(cmd)
	return cmd
}

func newStreamsCmd() *cobra.Command {
	var c clientOptions
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List stream assignments (stream key -> origin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := c.getStatus(cmd.Context())
			if err != nil {
				return err
			}
			if c.json {
				return writeJSON(cmd.OutOrStdout(), st.Assignments)
			}
			printAssignments(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
	c.register(cmd)
	return cmd
}

// newDrainCmd builds "drain ORIGIN" (drain true) or "undrain ORIGIN".
func newDrainCmd(drain bool) *cobra.Command {
	var c clientOptions
	name, short := "drain", "Stop assigning new streams to an origin (existing streams stay)"
	if !drain {
		name, short = "undrain", "Let an origin take new streams again"
	}
	cmd := &cobra.Command{
		Use:   name + " ORIGIN",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := c.do(cmd.Context(), http.MethodPost, "/mesh/v1/origins/"+url.PathEscape(args[0])+"/"+name)
			if err != nil {
				return err
			}
			if c.json {
				return printJSON(cmd.OutOrStdout(), body)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "origin %s: %sed\n", args[0], name)
			return nil
		},
	}
	c.register(cmd)
	def, _ := os.LookupEnv(envPrefix + "TOKEN")
	cmd.Flags().StringVar(&c.token, "token", def, "bearer token of the mesh (env SRS_MESH_TOKEN)")
	return cmd
}

func printJSON(w io.Writer, raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return writeJSON(w, v)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printSummary(w io.Writer, st mesh.Status) {
	leader := st.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "Node %s  state %s  leader %s\n", st.NodeID, st.RaftState, leader)
	fmt.Fprintf(w, "Raft term %d  commit %d  applied %d  last log %d\n",
		st.Term, st.CommitIndex, st.AppliedIndex, st.LastLogIndex)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func printMembers(w io.Writer, st mesh.Status) {
	fmt.Fprintf(w, "MEMBERS (%d)\n", len(st.Members))
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tGOSSIP ADDR\tRAFT ADDR\tGOSSIP\tRAFT")
	members := append([]mesh.MemberStatus(nil), st.Members...)
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	for _, m := range members {
		id := m.ID
		if m.ID == st.Leader {
			id += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clip(id, 20), m.GossipAddr, m.RaftAddr, dash(m.GossipState), dash(m.RaftRole))
	}
	tw.Flush()
}

func printOrigins(w io.Writer, st mesh.Status, now time.Time) {
	fmt.Fprintf(w, "ORIGINS (%d)\n", len(st.Origins))
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tRTMP\tHTTP\tHEALTH\tDRAIN\tSTREAMS\tHEARTBEAT")
	for _, o := range st.Origins {
		health := "ok"
		if !o.Healthy {
			health = "DOWN"
		}
		drain := "-"
		if o.Draining {
			drain = "yes"
		}
		hb := "-"
		if o.LastHeartbeatUnixMs > 0 {
			hb = age(now, o.LastHeartbeatUnixMs) + " ago"
		} else if o.Static {
			hb = "static"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", clip(o.ID, 16), dash(o.RTMP), dash(o.HTTP), health, drain, o.Streams, hb)
	}
	tw.Flush()
}

func printAssignments(w io.Writer, st mesh.Status, now time.Time) {
	fmt.Fprintf(w, "STREAMS (%d)\n", len(st.Assignments))
	tw := newTable(w)
	fmt.Fprintln(tw, "KEY\tORIGIN\tAGE\tLAST USED")
	for _, a := range st.Assignments {
		origin := a.Origin
		if !a.OriginHealthy {
			origin += " (down)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", clip(a.Key, 40), clip(origin, 20), age(now, a.CreatedUnixMs), age(now, a.LastUsedUnixMs))
	}
	tw.Flush()
}

// age renders how long ago a Unix millisecond timestamp was, compactly.
func age(now time.Time, ms int64) string {
	if ms <= 0 {
		return "-"
	}
	d := now.Sub(time.UnixMilli(ms))
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// clip shortens s to n characters so that tables fit an 80-column terminal.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "~"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
