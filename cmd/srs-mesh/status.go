package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/stream"
)

// clientOptions are the flags shared by the commands that talk to a node's
// system API.
type clientOptions struct {
	addr    string
	json    bool
	token   string
	timeout time.Duration
	// events is how many of the latest events "status" shows.
	events int
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

// getStreams fetches the cluster-wide stream list with live session counts.
// Nodes that predate GET /mesh/v1/streams answer 404; callers fall back to
// the assignments of the status document.
func (c *clientOptions) getStreams(ctx context.Context) (streams.Cluster, []byte, error) {
	var doc streams.Cluster
	body, err := c.do(ctx, http.MethodGet, "/mesh/v1/streams")
	if err != nil {
		return doc, nil, err
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return doc, nil, fmt.Errorf("bad streams document from %s: %w", c.addr, err)
	}
	return doc, body, nil
}

// getEvents fetches the latest limit events of the mesh, merged over its
// nodes.
func (c *clientOptions) getEvents(ctx context.Context, limit int) (mesh.Events, error) {
	var doc mesh.Events
	body, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/mesh/v1/events?limit=%d", max(limit, 1)))
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return doc, fmt.Errorf("bad events document from %s: %w", c.addr, err)
	}
	return doc, nil
}

// streamsFromStatus builds a stream list without session counts from the
// assignments of a status document.
func streamsFromStatus(st mesh.Status) streams.Cluster {
	doc := streams.Cluster{Streams: []streams.Stream{}, Nodes: []peers.Answer{}, GeneratedUnix: st.GeneratedUnix}
	for _, a := range st.Assignments {
		doc.Streams = append(doc.Streams, streams.Stream{Key: a.Key, Origin: a.Origin, OriginHealthy: a.OriginHealthy,
			CreatedUnixMs: a.CreatedUnixMs, LastUsedUnixMs: a.LastUsedUnixMs})
	}
	return doc
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
	} else if method != http.MethodGet {
		// Operator writes need an Authorization header even on a mesh
		// without a token (it keeps web pages from posting them).
		req.Header.Set("Authorization", "Bearer -")
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
			width := terminalWidth(w)
			printSummary(w, st)
			fmt.Fprintln(w)
			printMembers(w, width, st)
			fmt.Fprintln(w)
			printOrigins(w, width, st, time.Now())
			fmt.Fprintln(w)
			// Session counts are optional: an older node, or a slow
			// fan-out, still leaves the assignments to show.
			if doc, _, err := c.getStreams(cmd.Context()); err == nil {
				printAssignments(w, width, doc, true, time.Now())
			} else {
				printAssignments(w, width, streamsFromStatus(st), false, time.Now())
			}
			// Events too: a node that predates them answers 404, and
			// the rest of the status stands without them.
			if c.events > 0 {
				if ev, err := c.getEvents(cmd.Context(), c.events); err == nil {
					fmt.Fprintln(w)
					printEvents(w, width, ev, time.Now())
				}
			}
			return nil
		},
	}
	c.register(cmd)
	cmd.Flags().IntVar(&c.events, "events", 10, "show the last N events of the mesh (0: none)")
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
			printOrigins(cmd.OutOrStdout(), terminalWidth(cmd.OutOrStdout()), st, time.Now())
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
		Short: "List streams: origin and live clients per protocol over the mesh",
		Long: `List every assigned stream and every stream with live clients, with its
origin and its clients summed over all nodes (GET /mesh/v1/streams). With
--json, print that document. Against a node without /mesh/v1/streams, list
the assignments of /mesh/v1/status without client counts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			doc, raw, err := c.getStreams(cmd.Context())
			counted := err == nil
			if err != nil {
				st, _, serr := c.getStatus(cmd.Context())
				if serr != nil {
					return serr
				}
				doc, raw = streamsFromStatus(st), nil
			}
			if c.json {
				if raw != nil {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				return writeJSON(cmd.OutOrStdout(), doc)
			}
			printStreams(cmd.OutOrStdout(), terminalWidth(cmd.OutOrStdout()), doc, counted, time.Now())
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
	var move bool
	var moveTimeout time.Duration
	cmd := &cobra.Command{
		Use:   name + " ORIGIN",
		Short: short,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s needs one argument, the id of the origin (srs-mesh origins lists them), e.g. srs-mesh %s origin-1; got %d", name, name, len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/mesh/v1/origins/" + url.PathEscape(args[0]) + "/" + name
			if move {
				path += "?move=true"
			}
			body, err := c.do(cmd.Context(), http.MethodPost, path)
			if err != nil {
				return err
			}
			if c.json && !move {
				return printJSON(cmd.OutOrStdout(), body)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "origin %s: %sed\n", args[0], name)
			if !move {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), moveTimeout)
			defer cancel()
			return c.waitEvacuated(ctx, cmd.OutOrStdout(), args[0])
		},
	}
	c.register(cmd)
	if drain {
		cmd.Flags().BoolVar(&move, "move", false, "also move the origin's live streams to other origins without a break, and wait until it holds none")
		cmd.Flags().DurationVar(&moveTimeout, "move-timeout", 10*time.Minute, "with --move, how long to wait for the origin to hold no stream")
	}
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
	fmt.Fprintf(w, "Raft term %d  commit %d  applied %d  last log %d  voters %d  non-voters %d\n",
		st.Term, st.CommitIndex, st.AppliedIndex, st.LastLogIndex, st.Voters, st.NonVoters)
	printProtocol(w, st.Protocol)
}

// printProtocol shows the command protocol (absent from nodes before
// versions): the versions, what waits for which members, and a halt.
func printProtocol(w io.Writer, p mesh.ProtocolStatus) {
	if p.Node == 0 {
		return
	}
	fmt.Fprintf(w, "Protocol node %d  lowest %d  mesh %d\n", p.Node, p.Lowest, p.Mesh)
	if len(p.Waiting) > 0 {
		fmt.Fprintf(w, "Waiting for all nodes to reach protocol %d: %s\n", p.Node, strings.Join(p.Waiting, ", "))
		fmt.Fprintf(w, "  behind: %s\n", strings.Join(p.Behind, ", "))
	}
	if p.Halted != "" {
		fmt.Fprintf(w, "HALTED: %s\n", p.Halted)
	}
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func printMembers(w io.Writer, width int, st mesh.Status) {
	fmt.Fprintf(w, "MEMBERS (%d)\n", len(st.Members))
	members := append([]mesh.MemberStatus(nil), st.Members...)
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	fitTable(w, width, func(w io.Writer, clip func(string, int) string) {
		tw := newTable(w)
		fmt.Fprintln(tw, "ID\tGOSSIP ADDR\tRAFT ADDR\tGOSSIP\tRAFT\tZONE")
		for _, m := range members {
			id := m.ID
			if m.ID == st.Leader {
				id += " *"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clip(id, 20), m.GossipAddr, m.RaftAddr, dash(m.GossipState), dash(m.RaftRole), dash(clip(m.Zone, 16)))
		}
		tw.Flush()
	})
}

// printOrigins is the origins table, then a line for each origin that is
// down saying why.
func printOrigins(w io.Writer, width int, st mesh.Status, now time.Time) {
	fmt.Fprintf(w, "ORIGINS (%d)\n", len(st.Origins))
	fitTable(w, width, func(w io.Writer, clip func(string, int) string) {
		// Cut to 80 columns, the table leaves out the HTTP address.
		cut := clip("xx", 1) != "xx"
		tw := newTable(w)
		if cut {
			fmt.Fprintln(tw, "ID\tRTMP\tHEALTH\tDRAIN\tSTREAMS\tCPU\tCONNS\tHEARTBEAT")
		} else {
			fmt.Fprintln(tw, "ID\tRTMP\tHTTP\tHEALTH\tDRAIN\tSTREAMS\tCPU\tCONNS\tHEARTBEAT")
		}
		for _, o := range st.Origins {
			health := "ok"
			if !o.Healthy {
				health = "DOWN"
			}
			drain := "-"
			if o.Draining {
				drain = "yes"
			}
			if o.Evacuating {
				drain = "moving"
			}
			hb := "-"
			if o.LastHeartbeatUnixMs > 0 {
				hb = age(now, o.LastHeartbeatUnixMs) + " ago"
			} else if o.Static {
				hb = "static"
			}
			streams := fmt.Sprint(o.Streams)
			if o.MaxStreams > 0 {
				streams += "/" + fmt.Sprint(o.MaxStreams)
			}
			if o.Weight > 1 {
				streams += fmt.Sprintf(" w%d", o.Weight)
			}
			cpu, conns := "-", "-"
			if o.Load != (stream.Load{}) {
				cpu = fmt.Sprintf("%d.%d%%", o.Load.CPUPermille/10, o.Load.CPUPermille%10)
				conns = fmt.Sprint(o.Load.Conns)
			}
			if cut {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", clip(o.ID, 16), clip(dash(o.RTMP), 21), health, drain, streams, cpu, conns, hb)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, dash(o.RTMP), dash(o.HTTP), health, drain, streams, cpu, conns, hb)
		}
		tw.Flush()
	})
	for _, o := range st.Origins {
		if !o.Healthy {
			why := o.HealthReason
			if why == "" {
				why = "no reason recorded"
			}
			fmt.Fprintln(w, clip(fmt.Sprintf("  %s is down: %s", o.ID, why), max(width, 80)-1))
		}
	}
}

// printAssignments is the streams table of "status": total clients per
// stream when counted is true, else "-".
func printAssignments(w io.Writer, width int, doc streams.Cluster, counted bool, now time.Time) {
	fmt.Fprintf(w, "STREAMS (%d)\n", len(doc.Streams))
	fitTable(w, width, func(w io.Writer, clip func(string, int) string) {
		tw := newTable(w)
		fmt.Fprintln(tw, "KEY\tORIGIN\tCLIENTS\tAGE\tLAST USED")
		for _, s := range doc.Streams {
			clients := "-"
			if counted {
				clients = fmt.Sprint(s.TotalClients)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clip(s.Key, 32), clip(streamOrigin(s), 16), clients,
				age(now, s.CreatedUnixMs), age(now, s.LastUsedUnixMs))
		}
		tw.Flush()
	})
	printMissingNodes(w, width, doc)
}

// printStreams is the table of "streams": clients per protocol.
func printStreams(w io.Writer, width int, doc streams.Cluster, counted bool, now time.Time) {
	fmt.Fprintf(w, "STREAMS (%d)\n", len(doc.Streams))
	fitTable(w, width, func(w io.Writer, clip func(string, int) string) {
		tw := newTable(w)
		fmt.Fprintln(tw, "KEY\tORIGIN\tCLIENTS\tAGE")
		for _, s := range doc.Streams {
			clients := "-"
			if counted {
				clients = clientsText(s.Clients)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", clip(s.Key, 34), clip(streamOrigin(s), 16), clip(clients, 20), age(now, s.CreatedUnixMs))
		}
		tw.Flush()
	})
	printMissingNodes(w, width, doc)
}

// streamOrigin renders a stream's sources: its origin ("-" when
// unassigned, marked when down), then "+N" for its warm replicas and
// "->ID" for a planned move in progress.
func streamOrigin(s streams.Stream) string {
	out := s.Origin
	switch {
	case s.Origin == "":
		return "-"
	case !s.OriginHealthy:
		out += " (down)"
	}
	if len(s.Replicas) > 0 {
		out += fmt.Sprintf(" +%d", len(s.Replicas))
	}
	if s.Moving != "" {
		out += " ->" + s.Moving
	}
	return out
}

// clientsText renders client counts by protocol, "flv:1 rtmp:2", or "0".
func clientsText(m map[string]int) string {
	protos := make([]string, 0, len(m))
	for p, n := range m {
		if n > 0 {
			protos = append(protos, p)
		}
	}
	if len(protos) == 0 {
		return "0"
	}
	sort.Strings(protos)
	parts := make([]string, len(protos))
	for i, p := range protos {
		parts[i] = fmt.Sprintf("%s:%d", p, m[p])
	}
	return strings.Join(parts, " ")
}

// printMissingNodes notes the nodes whose clients are not in the counts.
func printMissingNodes(w io.Writer, width int, doc streams.Cluster) {
	for _, n := range doc.Nodes {
		if !n.OK {
			fmt.Fprintln(w, clip(fmt.Sprintf("(clients on %s not counted: %s)", n.ID, n.Error), max(width, 80)-1))
		}
	}
}

// printEvents is the events table of "status", oldest first, as the nodes
// recorded them.
func printEvents(w io.Writer, width int, doc mesh.Events, now time.Time) {
	fmt.Fprintf(w, "EVENTS (last %d)\n", len(doc.Events))
	fitTable(w, width, func(w io.Writer, clip func(string, int) string) {
		tw := newTable(w)
		fmt.Fprintln(tw, "WHEN\tNODE\tEVENT\tABOUT\tDETAIL")
		for _, e := range doc.Events {
			about := e.Origin
			if e.Stream != "" {
				about = e.Stream
			} else if about == "" {
				about = e.Member
			}
			when := time.UnixMilli(e.TimeUnixMs).Format("15:04:05")
			if now.Sub(time.UnixMilli(e.TimeUnixMs)) > 24*time.Hour {
				when = time.UnixMilli(e.TimeUnixMs).Format("Jan 02")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", when, clip(e.Node, 10), clip(e.Kind, 16), clip(dash(about), 22), clip(e.Detail, 18))
		}
		tw.Flush()
	})
	for _, n := range doc.Nodes {
		if !n.OK {
			fmt.Fprintln(w, clip(fmt.Sprintf("(events of %s missing: %s)", n.ID, n.Error), max(width, 80)-1))
		}
	}
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

// fitTable writes the table render draws: with whole values when every
// line fits width columns, else with each value clipped to its share of an
// 80-column line (render's clip).
func fitTable(w io.Writer, width int, render func(w io.Writer, clip func(string, int) string)) {
	var whole bytes.Buffer
	render(&whole, func(s string, _ int) string { return s })
	fits := true
	for line := range strings.SplitSeq(whole.String(), "\n") {
		fits = fits && utf8.RuneCountInString(line) <= width
	}
	if fits {
		w.Write(whole.Bytes())
		return
	}
	render(w, clip)
}

// terminalWidth is the number of columns of the terminal w writes to, or
// of $COLUMNS, and 80 when neither says (a pipe, a file) or says less.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return max(int(ws.Col), 80)
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil {
		return max(n, 80)
	}
	return 80
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
