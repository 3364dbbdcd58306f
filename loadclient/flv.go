package loadclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
)

// newTransport is the HTTP client of a run's HTTP-FLV or HLS players: HTTP/1.1,
// a connection per player (HLS players keep theirs between requests), set-ups
// bounded by cfg.ConnectTimeout and reads by cfg.IdleTimeout.
func newTransport(cfg *Config) *http.Transport {
	d := &net.Dialer{Timeout: cfg.ConnectTimeout}
	idle := cfg.IdleTimeout
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: nc, idle: idle}, nil
		},
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.ConnectTimeout,
		MaxIdleConns:          cfg.Players,
		MaxIdleConnsPerHost:   cfg.Players,
		IdleConnTimeout:       idle,
		DisableCompression:    true,
		ReadBufferSize:        readBuffer,
		WriteBufferSize:       1 << 10,
	}
}

// idleConn moves its read deadline before reads, at most once per quarter
// of idle, so that a connection that receives nothing for idle fails.
type idleConn struct {
	net.Conn
	idle  time.Duration
	moved time.Time
}

func (c *idleConn) Read(b []byte) (int, error) {
	if now := time.Now(); now.Sub(c.moved) > c.idle/4 {
		c.moved = now
		c.Conn.SetReadDeadline(now.Add(c.idle))
	}
	return c.Conn.Read(b)
}

// countingReader counts a player's bytes.
type countingReader struct {
	r io.Reader
	p *player
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.count(n)
	return n, err
}

// playFLV plays an HTTP-FLV URL: the FLV header and every tag are parsed
// (fanout.Reader, each tag bounded), and the media counted.
func playFLV(ctx context.Context, client *http.Client, cfg *Config, p *player) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	r := fanout.NewReader(bufio.NewReaderSize(&countingReader{r: resp.Body, p: p}, readBuffer), fanout.DefaultMaxTagSize)
	if _, err := r.ReadHeader(); err != nil {
		return flvErr(ctx, err)
	}
	sawVideo := false
	for {
		t, err := r.SkipTag() // the body is counted, not kept
		if err != nil {
			if err == io.EOF && ctx.Err() == nil {
				return errors.New("the stream ended")
			}
			return flvErr(ctx, err)
		}
		now := time.Now()
		switch t.Type {
		case fanout.TagVideo:
			sawVideo = true
			if t.Kind == fanout.KindVideoSeq {
				p.media(now)
			} else {
				p.frame(now)
			}
		case fanout.TagAudio:
			if !sawVideo {
				p.frame(now)
			}
		}
	}
}

// flvErr is nil once ctx ended, ErrIdle for a read deadline, else err,
// marked as bad media when it is a parse error.
func flvErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrIdle
	case errors.Is(err, fanout.ErrNotFLV), errors.Is(err, fanout.ErrTagTooLarge):
		return fmt.Errorf("%w: %w", ErrBadMedia, err)
	}
	return err
}
