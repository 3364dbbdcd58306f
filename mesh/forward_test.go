package mesh

import (
	"fmt"
	"testing"
)

func TestLeaderDetailSaysThingsOnce(t *testing.T) {
	for _, c := range []struct {
		sentinel error
		msg      string
		want     string
	}{
		{ErrBadCommand, "mesh: malformed command: bad stream key", "mesh: malformed command: bad stream key"},
		{ErrOriginAnswers, "mesh: origin still answers; stream not moved: o1 answered", "mesh: origin still answers; stream not moved: o1 answered"},
		{ErrBadCommand, "bad stream key", "mesh: malformed command: bad stream key"},
		{nil, "mesh: unknown origin", "mesh: forward to leader: unknown origin"},
	} {
		wrap := c.sentinel
		if wrap == nil {
			wrap = errForward
		}
		if got := fmt.Errorf("%w: %s", wrap, leaderDetail(c.sentinel, c.msg)).Error(); got != c.want {
			t.Errorf("%q: %q, want %q", c.msg, got, c.want)
		}
	}
}
