package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
)

// evacuatePoll is how often "drain --move" reads the status while streams
// move.
const evacuatePoll = 500 * time.Millisecond

// waitEvacuated follows the streams of a drained origin as they move (drain
// --move): it prints each stream as it lands on another origin, and returns
// nil once the origin holds no stream (as primary, replica or move target),
// or an error naming the streams left when ctx ends first.
func (c *clientOptions) waitEvacuated(ctx context.Context, w io.Writer, origin string) error {
	seen := map[string]bool{} // streams seen on the origin
	for {
		st, _, err := c.getStatus(ctx)
		if err != nil && ctx.Err() != nil {
			return err
		}
		if err == nil {
			left := onOrigin(st, origin)
			for _, a := range st.Assignments {
				if seen[a.Key] && !left[a.Key] {
					kind := a.MoveKind
					if kind == "" {
						kind = "moved"
					}
					fmt.Fprintf(w, "stream %s: on %s (%s)\n", a.Key, a.Origin, kind)
					delete(seen, a.Key)
				}
			}
			for k := range seen {
				if !left[k] {
					fmt.Fprintf(w, "stream %s: ended\n", k)
					delete(seen, k)
				}
			}
			for k := range left {
				seen[k] = true
			}
			if len(left) == 0 {
				fmt.Fprintf(w, "origin %s holds no stream\n", origin)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			keys := make([]string, 0, len(seen))
			for k := range seen {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return fmt.Errorf("origin %s still holds %d streams: %s", origin, len(keys), strings.Join(keys, ", "))
		case <-time.After(evacuatePoll):
		}
	}
}

// onOrigin is the set of streams that origin holds a source of.
func onOrigin(st mesh.Status, origin string) map[string]bool {
	out := map[string]bool{}
	for _, a := range st.Assignments {
		if a.Origin == origin || a.Moving == origin {
			out[a.Key] = true
			continue
		}
		for _, r := range a.Replicas {
			if r == origin {
				out[a.Key] = true
			}
		}
	}
	return out
}
