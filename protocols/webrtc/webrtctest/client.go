package webrtctest

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	pionwebrtc "github.com/pion/webrtc/v4"
)

// ClientAPI returns a pion API for test clients: full ICE, IPv4 UDP on
// loopback only, no mDNS, quiet logs, default codecs.
func ClientAPI() (*pionwebrtc.API, error) {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	se := loopbackSettings(lf)
	var me pionwebrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	return pionwebrtc.NewAPI(pionwebrtc.WithSettingEngine(se), pionwebrtc.WithMediaEngine(&me)), nil
}

// loopbackSettings keeps a peer on IPv4 UDP over loopback, without mDNS,
// logging through lf.
func loopbackSettings(lf logging.LoggerFactory) pionwebrtc.SettingEngine {
	var se pionwebrtc.SettingEngine
	se.LoggerFactory = lf
	se.SetNetworkTypes([]pionwebrtc.NetworkType{pionwebrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// Publisher is a send-only peer with an H.264 and an Opus track. Signal its
// PC, then Start it; it sends one packet per track every 10 ms until Close.
type Publisher struct {
	PC           *pionwebrtc.PeerConnection
	video, audio *pionwebrtc.TrackLocalStaticRTP
	stop, done   chan struct{}
	started      atomic.Bool
	once         sync.Once
}

// NewPublisher creates the peer connection and its two tracks.
func NewPublisher(api *pionwebrtc.API) (*Publisher, error) {
	return NewPublisherCodec(api, pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"})
}

// NewPublisherCodec is NewPublisher with its video track declared as
// video (its payloads stay the synthetic H.264 ones).
func NewPublisherCodec(api *pionwebrtc.API, video pionwebrtc.RTPCodecCapability) (*Publisher, error) {
	pc, err := api.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Publisher{PC: pc, stop: make(chan struct{}), done: make(chan struct{})}
	p.video, err = pionwebrtc.NewTrackLocalStaticRTP(video, "video", "pub")
	if err == nil {
		p.audio, err = pionwebrtc.NewTrackLocalStaticRTP(pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	}
	for _, tr := range []*pionwebrtc.TrackLocalStaticRTP{p.video, p.audio} {
		if err == nil {
			_, err = pc.AddTransceiverFromTrack(tr, pionwebrtc.RTPTransceiverInit{Direction: pionwebrtc.RTPTransceiverDirectionSendonly})
		}
	}
	if err != nil {
		pc.Close()
		return nil, err
	}
	return p, nil
}

// Start begins sending; the sender goroutine ends at Close.
func (p *Publisher) Start() {
	if !p.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer close(p.done)
		p.send(true)
	}()
}

// StartRTP is Start with real video: the H.264 RTP packets (packetization
// mode 1, e.g. FFmpeg's "-f rtp" output) that arrive on src are sent as the
// video track, so that a real decoder shows pictures; audio stays
// synthetic. Both sender goroutines end at Close, which does not close src.
func (p *Publisher) StartRTP(src net.PacketConn) {
	if !p.started.CompareAndSwap(false, true) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.send(false)
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 1600)
		var pkt rtp.Packet
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			src.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, _, err := src.ReadFrom(buf)
			if err != nil {
				continue
			}
			if pkt.Unmarshal(buf[:n]) == nil {
				p.video.WriteRTP(&pkt)
			}
		}
	}()
	go func() {
		wg.Wait()
		close(p.done)
	}()
}

// send writes one synthetic packet per track (only audio unless video)
// every 10 ms until Close.
func (p *Publisher) send(video bool) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	idr := append([]byte{0x65}, make([]byte, 600)...) // an H.264 IDR slice NAL
	opus := make([]byte, 80)
	for seq := uint16(0); ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		if video {
			p.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: uint32(seq) * 900}, Payload: idr})
		}
		p.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 480}, Payload: opus})
	}
}

// Close stops sending, waits for the sender and closes the peer connection.
// It is safe to call more than once.
func (p *Publisher) Close() {
	p.once.Do(func() {
		close(p.stop)
		if p.started.Load() {
			<-p.done
		}
		p.PC.Close()
	})
}

// Player is a receive-only peer (one video, one audio transceiver) that
// counts the RTP packets it receives per kind.
type Player struct {
	PC           *pionwebrtc.PeerConnection
	Video, Audio atomic.Uint64
	wg           sync.WaitGroup
	once         sync.Once
}

// NewPlayer creates the peer connection; signal it to start receiving.
func NewPlayer(api *pionwebrtc.API) (*Player, error) {
	pc, err := api.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Player{PC: pc}
	for _, k := range []pionwebrtc.RTPCodecType{pionwebrtc.RTPCodecTypeVideo, pionwebrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pionwebrtc.RTPTransceiverInit{Direction: pionwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(tr *pionwebrtc.TrackRemote, _ *pionwebrtc.RTPReceiver) {
		n := &p.Audio
		if tr.Kind() == pionwebrtc.RTPCodecTypeVideo {
			n = &p.Video
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				n.Add(1)
			}
		}()
	})
	return p, nil
}

// Close closes the peer connection and waits for the track readers. It is
// safe to call more than once.
func (p *Player) Close() {
	p.once.Do(func() {
		p.PC.Close()
		p.wg.Wait()
	})
}

// TCPClientAPI is ClientAPI for a peer whose network blocks UDP: its only
// candidates are active ICE-TCP ones over loopback (RFC 6544).
func TCPClientAPI() (*pionwebrtc.API, error) {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	se := loopbackSettings(lf)
	se.SetNetworkTypes([]pionwebrtc.NetworkType{pionwebrtc.NetworkTypeTCP4})
	var me pionwebrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	return pionwebrtc.NewAPI(pionwebrtc.WithSettingEngine(se), pionwebrtc.WithMediaEngine(&me)), nil
}
