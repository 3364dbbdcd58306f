package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
)

// ReadRTMP plays an rtmp:// URL ("rtmp://host:port/app/stream[?query]")
// with a minimal client that reads and discards every message, and adds
// the bytes it reads to *n until ctx ends (then it returns nil) or the
// play fails. It costs far less than an FFmpeg player, for benchmarks and
// tests with hundreds of players; it decodes nothing.
func ReadRTMP(ctx context.Context, rawURL string, n *atomic.Int64) error {
	return readRTMP(ctx, rawURL, n, nil)
}

// readRTMP is ReadRTMP, with media (when not nil) called with every audio
// and video message.
func readRTMP(ctx context.Context, rawURL string, n *atomic.Int64, media func(*chunk.Message)) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	app, name, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok {
		return fmt.Errorf("no stream in %s", rawURL)
	}
	if u.RawQuery != "" {
		name += "?" + u.RawQuery
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := handshake.Client(nc, 0); err != nil {
		return err
	}
	cr := &countingReader{r: nc, n: n}
	r := chunk.NewReader(bufio.NewReaderSize(cr, 64<<10), 16<<20, 64<<10)
	bw := bufio.NewWriter(nc)
	w := chunk.NewWriter(bw, 4096)
	command := func(sid uint32, vals ...any) error {
		b, err := amf0.AppendAll(nil, vals...)
		if err != nil {
			return err
		}
		if err := w.WriteMessage(&chunk.Message{CSID: 3, Type: chunk.TypeCommandAMF0, StreamID: sid, Payload: b}); err != nil {
			return err
		}
		return w.Flush()
	}
	tcURL := "rtmp://" + u.Host + "/" + app
	if err := command(0, "connect", 1.0, amf0.Object{{Key: "app", Value: app}, {Key: "tcUrl", Value: tcURL}, {Key: "flashVer", Value: "LNX 9,0,124,2"}}); err != nil {
		return err
	}
	if err := command(0, "createStream", 2.0, nil); err != nil {
		return err
	}
	var window, acked uint64
	played := false
	for {
		m, err := r.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if played {
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		}
		switch m.Type {
		case chunk.TypeAudio, chunk.TypeVideo:
			if media != nil {
				media(&m)
			}
		case chunk.TypeWindowAckSize:
			if len(m.Payload) >= 4 {
				window = uint64(m.Payload[0])<<24 | uint64(m.Payload[1])<<16 | uint64(m.Payload[2])<<8 | uint64(m.Payload[3])
			}
		case chunk.TypeCommandAMF0:
			vals, err := amf0.DecodeAll(m.Payload)
			if err != nil || len(vals) < 2 {
				continue
			}
			switch name0, _ := vals[0].(string); name0 {
			case "_result":
				if txn, _ := vals[1].(float64); txn == 2 && len(vals) >= 4 {
					sid, _ := vals[3].(float64)
					if err := command(uint32(sid), "play", 3.0, nil, name, -1000.0); err != nil {
						return err
					}
				}
			case "onStatus":
				if len(vals) >= 4 {
					if info, ok := vals[3].(amf0.Object); ok {
						if info.String("level") == "error" {
							return errors.New(info.String("code") + ": " + info.String("description"))
						}
						if info.String("code") == "NetStream.Play.Start" {
							played = true
							nc.SetDeadline(time.Time{})
						}
					}
				}
			}
		}
		if read := r.BytesRead(); window > 0 && read-acked >= window/2 {
			acked = read
			if err := w.WriteControl(chunk.TypeAck, uint32(read)); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	k, err := c.r.Read(b)
	c.n.Add(int64(k))
	return k, err
}
