package loadclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
)

// Bounds of an RTMP player.
const (
	// rtmpMaxMessage bounds a message a player accepts.
	rtmpMaxMessage = 16 << 20
	// readBuffer is a player's read buffer (RTMP and HTTP-FLV): small, as
	// a player of thousands must be.
	readBuffer = 16 << 10
)

// rtmpTarget splits an rtmp:// URL into the dial address, the tcUrl, the
// app and the stream name to play (with the URL's query).
func rtmpTarget(rawURL string) (addr, tcURL, app, name string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", "", "", err
	}
	app, name, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok || app == "" || name == "" {
		return "", "", "", "", fmt.Errorf("%w: no app/stream in %s", ErrBadURL, rawURL)
	}
	if u.RawQuery != "" {
		name += "?" + u.RawQuery
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "1935")
	}
	return addr, "rtmp://" + u.Host + "/" + app, app, name, nil
}

// playRTMP plays an rtmp:// URL: handshake, connect, createStream, play,
// then every message is parsed (chunk.Reader), acknowledged as the
// server's window asks, and its media counted.
func playRTMP(ctx context.Context, cfg *Config, p *player) error {
	addr, tcURL, app, name, err := rtmpTarget(cfg.URL)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: cfg.ConnectTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	setup := time.Now().Add(cfg.ConnectTimeout)
	nc.SetDeadline(setup)
	if err := handshake.Client(nc, 0); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	in := &idleReader{nc: nc, p: p, idle: cfg.IdleTimeout, until: setup}
	r := chunk.NewReader(bufio.NewReaderSize(in, readBuffer), rtmpMaxMessage, readBuffer)
	w := chunk.NewWriter(nc, 512)
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
	if err := command(0, "connect", 1.0, amf0.Object{{Key: "app", Value: app}, {Key: "tcUrl", Value: tcURL},
		{Key: "flashVer", Value: "LNX 9,0,124,2"}, {Key: "fpad", Value: false}, {Key: "capabilities", Value: 15.0},
		{Key: "audioCodecs", Value: 4071.0}, {Key: "videoCodecs", Value: 252.0}, {Key: "videoFunction", Value: 1.0}}); err != nil {
		return err
	}
	if err := command(0, "createStream", 2.0, nil); err != nil {
		return err
	}
	var window, acked uint64
	sawVideo := false
	for {
		m, err := r.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if p.first.Load() == 0 {
					return fmt.Errorf("no media within %v", cfg.ConnectTimeout)
				}
				return ErrIdle
			}
			return err
		}
		switch m.Type {
		case chunk.TypeVideo:
			if len(m.Payload) == 0 {
				continue
			}
			sawVideo = true
			if !videoSequenceHeader(m.Payload) {
				p.frame(time.Now())
			} else {
				p.media(time.Now())
			}
		case chunk.TypeAudio:
			if !sawVideo && len(m.Payload) > 0 {
				p.frame(time.Now())
			}
		case chunk.TypeWindowAckSize:
			if len(m.Payload) >= 4 {
				window = uint64(binary.BigEndian.Uint32(m.Payload))
			}
		case chunk.TypeCommandAMF0:
			vals, err := amf0.DecodeAll(m.Payload)
			if err != nil || len(vals) < 2 {
				continue
			}
			switch cmd, _ := vals[0].(string); cmd {
			case "_result":
				if txn, _ := vals[1].(float64); txn == 2 && len(vals) >= 4 {
					sid, _ := vals[3].(float64)
					if err := command(uint32(sid), "play", 3.0, nil, name, -1000.0); err != nil {
						return err
					}
				}
			case "_error":
				return fmt.Errorf("refused: %s", statusText(vals))
			case "onStatus":
				if len(vals) >= 4 {
					if info, ok := vals[3].(amf0.Object); ok {
						switch code := info.String("code"); {
						case info.String("level") == "error":
							return fmt.Errorf("refused: %s", code)
						case code == "NetStream.Play.UnpublishNotify", code == "NetStream.Play.Stop":
							return errors.New("the stream ended")
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

// statusText is the code of an _error's info object, or its values.
func statusText(vals []any) string {
	if len(vals) >= 4 {
		if info, ok := vals[3].(amf0.Object); ok {
			return info.String("code") + " " + info.String("description")
		}
	}
	return fmt.Sprint(vals)
}

// videoSequenceHeader reports whether an FLV video body (RTMP video
// message) is a sequence header, legacy (AVC/HEVC packet type 0) or
// enhanced RTMP (packet type 0, sequence start), rather than a frame.
func videoSequenceHeader(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	if b[0]&0x80 != 0 { // enhanced RTMP: the packet type is the low nibble
		return b[0]&0x0f == 0
	}
	codec := b[0] & 0x0f
	return (codec == 7 || codec == 12) && b[1] == 0
}

// idleReader reads a player's connection, counting the bytes and moving
// the read deadline: to the set-up's until the first media, then to the
// idle timeout after each read (at most once per quarter of it, so that a
// busy player does not move its deadline on every read).
type idleReader struct {
	nc    net.Conn
	p     *player
	idle  time.Duration
	until time.Time // the set-up's deadline
	moved time.Time
}

func (r *idleReader) Read(b []byte) (int, error) {
	if r.p.first.Load() != 0 {
		if now := time.Now(); now.Sub(r.moved) > r.idle/4 {
			r.moved = now
			r.nc.SetDeadline(now.Add(r.idle)) // writes (acknowledgements) too
		}
	}
	n, err := r.nc.Read(b)
	r.p.count(n)
	return n, err
}
