package rtmp

import (
	"bytes"
	"testing"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
)

func metadataPayload(t testing.TB, name string) []byte {
	b, err := amf0.AppendAll(nil, name, "onMetaData", amf0.Object{{Key: "width", Value: 1280.0}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMediaClassification(t *testing.T) {
	type want struct{ key, vsh, ash, meta bool }
	for _, c := range []struct {
		name string
		typ  uint8
		p    []byte
		want want
	}{
		{"avc keyframe", chunk.TypeVideo, []byte{0x17, 0x01, 0, 0, 0}, want{key: true}},
		{"avc inter frame", chunk.TypeVideo, []byte{0x27, 0x01, 0, 0, 0}, want{}},
		{"avc sequence header", chunk.TypeVideo, []byte{0x17, 0x00, 0, 0, 0}, want{vsh: true}},
		{"hevc sequence header", chunk.TypeVideo, []byte{0x1c, 0x00, 0, 0, 0}, want{vsh: true}},
		{"hevc keyframe", chunk.TypeVideo, []byte{0x1c, 0x01, 0, 0, 0}, want{key: true}},
		{"enhanced sequence start", chunk.TypeVideo, []byte{0x90, 'h', 'v', 'c', '1'}, want{vsh: true}},
		{"enhanced coded keyframe", chunk.TypeVideo, []byte{0x91, 'h', 'v', 'c', '1'}, want{key: true}},
		{"enhanced coded keyframe X", chunk.TypeVideo, []byte{0x93, 'a', 'v', '0', '1'}, want{key: true}},
		{"enhanced inter frame", chunk.TypeVideo, []byte{0xa1, 'h', 'v', 'c', '1'}, want{}},
		{"enhanced metadata", chunk.TypeVideo, []byte{0x94, 'h', 'v', 'c', '1'}, want{}},
		{"short video", chunk.TypeVideo, []byte{0x17}, want{}},
		{"empty video", chunk.TypeVideo, nil, want{}},
		{"aac sequence header", chunk.TypeAudio, []byte{0xaf, 0x00, 0x12, 0x10}, want{ash: true}},
		{"aac frame", chunk.TypeAudio, []byte{0xaf, 0x01, 0x21}, want{}},
		{"mp3 frame", chunk.TypeAudio, []byte{0x2f, 0x00, 0x21}, want{}},
		{"enhanced audio start", chunk.TypeAudio, []byte{0x90, 'O', 'p', 'u', 's'}, want{ash: true}},
		{"keyframe bytes as audio", chunk.TypeAudio, []byte{0x17, 0x01}, want{}},
		{"set data frame", chunk.TypeDataAMF0, metadataPayload(t, "@setDataFrame"), want{meta: true}},
		{"on metadata", chunk.TypeDataAMF0, metadataPayload(t, "@setDataFrame")[16:], want{meta: true}},
		{"amf3 data", chunk.TypeDataAMF3, append([]byte{0}, metadataPayload(t, "@setDataFrame")...), want{meta: true}},
		{"amf3 data without format byte", chunk.TypeDataAMF3, metadataPayload(t, "@setDataFrame"), want{}},
		{"other data", chunk.TypeDataAMF0, metadataPayload(t, "onTextData"), want{}},
		{"truncated name", chunk.TypeDataAMF0, []byte{0x02, 0x00, 0x0d, '@', 's'}, want{}},
		{"metadata as command", chunk.TypeCommandAMF0, metadataPayload(t, "@setDataFrame"), want{}},
	} {
		m := &chunk.Message{Type: c.typ, Payload: c.p}
		got := want{isKeyframe(m), isVideoSequenceHeader(m), isAudioSequenceHeader(m), isMetadata(m)}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestMediaCache(t *testing.T) {
	var c mediaCache
	if len(c.messages()) != 0 {
		t.Fatal("empty cache has messages")
	}
	aac := &chunk.Message{Type: chunk.TypeAudio, Payload: []byte{0xaf, 0x01, 9}}
	if !c.resumePoint(aac) {
		t.Fatal("an audio-only stream resumes at any audio frame")
	}
	meta := &chunk.Message{CSID: 4, Type: chunk.TypeDataAMF0, StreamID: 1, Payload: metadataPayload(t, "@setDataFrame")}
	ash := &chunk.Message{CSID: 4, Type: chunk.TypeAudio, StreamID: 1, Timestamp: 5, Payload: []byte{0xaf, 0x00, 0x12, 0x10}}
	vsh := &chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Timestamp: 5, Payload: []byte{0x17, 0x00, 1, 2}}
	inter := &chunk.Message{Type: chunk.TypeVideo, Payload: []byte{0x27, 0x01, 0}}
	for _, m := range []*chunk.Message{ash, meta, aac, vsh, inter} {
		c.observe(m)
	}
	// The cache keeps copies: the reader's buffer is reused.
	vsh.Payload[2] = 0xee
	got := c.messages()
	if len(got) != 3 || !isMetadata(got[0]) || !isVideoSequenceHeader(got[1]) || !isAudioSequenceHeader(got[2]) {
		t.Fatalf("cached %v", got)
	}
	if got[1].Payload[2] != 1 || got[1].CSID != 6 || got[1].Timestamp != 5 {
		t.Fatalf("cached video header %v %x", got[1], got[1].Payload)
	}
	if c.resumePoint(aac) || c.resumePoint(inter) || !c.resumePoint(&chunk.Message{Type: chunk.TypeVideo, Payload: []byte{0x17, 0x01}}) {
		t.Fatal("a stream with video resumes at key frames only")
	}
	// A new header replaces the old one; an oversized one is not kept.
	c.observe(&chunk.Message{Type: chunk.TypeVideo, Payload: []byte{0x17, 0x00, 7}})
	c.observe(&chunk.Message{Type: chunk.TypeVideo, Payload: append([]byte{0x17, 0x00}, make([]byte, maxCachedMessageBytes)...)})
	if p := c.messages()[1].Payload; !bytes.Equal(p, []byte{0x17, 0x00, 7}) {
		t.Fatalf("replaced header %x", p)
	}
	allocs := testing.AllocsPerRun(100, func() { c.observe(vsh); c.observe(inter) })
	if allocs != 0 {
		t.Fatalf("observe allocates %v times", allocs)
	}
}

func TestHeldMessages(t *testing.T) {
	var h heldMessages
	for i := 0; i < 3; i++ {
		if !h.add(&chunk.Message{Type: chunk.TypeVideo, Timestamp: uint32(i), Payload: []byte{byte(i), byte(i)}}) {
			t.Fatal("add")
		}
	}
	for i := 0; i < 3; i++ {
		if m := h.message(i); m.Timestamp != uint32(i) || !bytes.Equal(m.Payload, []byte{byte(i), byte(i)}) {
			t.Fatalf("message %d: %v", i, &m)
		}
	}
	if h.add(&chunk.Message{Payload: make([]byte, maxHeldBytes)}) {
		t.Fatal("held past the byte bound")
	}
	h.reset()
	if len(h.msgs) != 0 {
		t.Fatal("reset")
	}
}

func FuzzMediaClassification(f *testing.F) {
	f.Add(uint8(chunk.TypeVideo), []byte{0x17, 0x00, 1})
	f.Add(uint8(chunk.TypeVideo), []byte{0x91, 'h', 'v', 'c', '1'})
	f.Add(uint8(chunk.TypeAudio), []byte{0xaf, 0x00, 0x12})
	f.Add(uint8(chunk.TypeDataAMF0), metadataPayload(f, "@setDataFrame"))
	f.Add(uint8(chunk.TypeDataAMF3), []byte{0, 2, 0, 10, 'o', 'n'})
	f.Fuzz(func(t *testing.T, typ uint8, p []byte) {
		m := &chunk.Message{Type: typ, Payload: p}
		key, vsh := isKeyframe(m), isVideoSequenceHeader(m)
		if key && vsh {
			t.Fatal("both a key frame and a sequence header")
		}
		var c mediaCache
		c.observe(m)
		for _, cm := range c.messages() {
			if !bytes.Equal(cm.Payload, p) || cm.Type != typ {
				t.Fatalf("cached %v of %x", cm, p)
			}
		}
	})
}
