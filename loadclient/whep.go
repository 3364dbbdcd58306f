package loadclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// maxAnswer bounds a WHEP answer's bytes.
const maxAnswer = 64 << 10

// newWebRTC is the pion API of a run's WHEP players: UDP over IPv4 (the
// loopback too, for a node on the same host), no mDNS, no logs, the
// default codecs.
func newWebRTC() (*webrtc.API, error) {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	var se webrtc.SettingEngine
	se.LoggerFactory = lf
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	var me webrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&me)), nil
}

// playWHEP plays a WHEP URL (RFC 9725): a receive-only offer of a video
// and an audio track, POSTed as application/sdp, and the answer; then
// every RTP packet is parsed (pion) and counted, a video frame being a
// packet with the marker bit (for a stream without video, an audio packet
// is a frame). The session is DELETEd at the end, as players do.
func playWHEP(ctx context.Context, api *webrtc.API, client *http.Client, cfg *Config, p *player) error {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	var (
		mu     sync.Mutex
		closed bool
		wg     sync.WaitGroup // the track readers
		failed = make(chan error, 2)
	)
	defer func() {
		mu.Lock()
		closed = true
		mu.Unlock()
		pc.Close()
		wg.Wait()
	}()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
	}
	var sawVideo bool // set before audio counts as frames: guarded by mu
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		video := tr.Kind() == webrtc.RTPCodecTypeVideo
		if video {
			sawVideo = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				tr.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						select {
						case failed <- ErrIdle:
						default:
						}
					}
					return
				}
				now := time.Now()
				p.count(pkt.MarshalSize())
				switch {
				case video && pkt.Marker:
					p.frame(now)
				case !video:
					mu.Lock()
					audioOnly := !sawVideo
					mu.Unlock()
					if audioOnly {
						p.frame(now)
					} else {
						p.media(now)
					}
				default:
					p.media(now)
				}
			}
		}()
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed {
			select {
			case failed <- errors.New("ICE or DTLS failed"):
			default:
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil
	case <-time.After(cfg.ConnectTimeout):
		return errors.New("ICE gathering did not complete")
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, cfg.URL, bytes.NewReader([]byte(pc.LocalDescription().SDP)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	if len(answer) > maxAnswer {
		return fmt.Errorf("%w: an answer of more than %d bytes", ErrBadMedia, maxAnswer)
	}
	if loc, err := resp.Location(); err == nil {
		defer func() { // end the session, as a player leaving does; best effort
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if req, err := http.NewRequestWithContext(dctx, http.MethodDelete, loc.String(), nil); err == nil {
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return fmt.Errorf("%w: the answer: %w", ErrBadMedia, err)
	}
	first := time.NewTimer(cfg.ConnectTimeout)
	defer first.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-first.C:
			if p.first.Load() == 0 {
				return fmt.Errorf("no media within %v", cfg.ConnectTimeout)
			}
		}
	}
}
