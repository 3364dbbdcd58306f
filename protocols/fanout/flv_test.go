package fanout

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// flvHeader is an FLV header (audio and video) with PreviousTagSize0.
var flvHeader = []byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0}

// mkTag returns a tag's wire bytes: header, body, PreviousTagSize.
func mkTag(typ uint8, ts uint32, body []byte) []byte {
	b := make([]byte, tagHeaderSize, tagHeaderSize+len(body)+prevSizeLen)
	b[0] = typ
	b[1], b[2], b[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	b[4], b[5], b[6], b[7] = byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24)
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, uint32(tagHeaderSize+len(body)))
}

// Bodies of the tags the tests use.
var (
	avcSeq    = []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f}
	avcKey    = []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65}
	avcInter  = []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41}
	hevcSeq   = []byte{0x1c, 0, 0, 0, 0, 1}
	exHEVCSeq = []byte{0x90, 'h', 'v', 'c', '1', 1}
	exHEVCKey = []byte{0x91, 'h', 'v', 'c', '1', 0, 0, 0}
	exInter   = []byte{0xa1, 'h', 'v', 'c', '1', 0, 0, 0}
	aacSeq    = []byte{0xaf, 0, 0x12, 0x10}
	aacRaw    = []byte{0xaf, 1, 0x21, 0x00}
	mp3       = []byte{0x2f, 0xff}
	metadata  = append([]byte{2, 0, 10}, "onMetaData\x08\x00\x00\x00\x00\x00\x00\x09"...)
	setData   = append(append([]byte{2, 0, 13}, "@setDataFrame"...), metadata...)
	onCue     = append([]byte{2, 0, 10}, "onCuePoint"...)
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  uint8
		body []byte
		want Kind
	}{
		{"avc seq", TagVideo, avcSeq, KindVideoSeq},
		{"avc key", TagVideo, avcKey, KindKeyframe},
		{"avc inter", TagVideo, avcInter, KindOther},
		{"hevc seq (codec 12)", TagVideo, hevcSeq, KindVideoSeq},
		{"enhanced seq", TagVideo, exHEVCSeq, KindVideoSeq},
		{"enhanced key", TagVideo, exHEVCKey, KindKeyframe},
		{"enhanced inter", TagVideo, exInter, KindOther},
		{"enhanced truncated", TagVideo, []byte{0x90, 'h'}, KindOther},
		{"video empty", TagVideo, nil, KindOther},
		{"legacy key, one byte", TagVideo, []byte{0x17}, KindKeyframe},
		{"aac seq", TagAudio, aacSeq, KindAudioSeq},
		{"aac raw", TagAudio, aacRaw, KindOther},
		{"mp3", TagAudio, mp3, KindOther},
		{"audio short", TagAudio, []byte{0xaf}, KindOther},
		{"enhanced audio seq", TagAudio, []byte{0x90, 'O', 'p', 'u', 's'}, KindAudioSeq},
		{"onMetaData", TagScript, metadata, KindMetadata},
		{"@setDataFrame onMetaData", TagScript, setData, KindMetadata},
		{"onCuePoint", TagScript, onCue, KindOther},
		{"script truncated", TagScript, []byte{2, 0, 10, 'o'}, KindOther},
		{"unknown type", 7, avcSeq, KindOther},
	} {
		if got := Classify(tc.typ, tc.body); got != tc.want {
			t.Errorf("%s: Classify = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestReader(t *testing.T) {
	var in bytes.Buffer
	in.Write([]byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 11, 0xaa, 0xbb, 0, 0, 0, 0}) // DataOffset 11
	tags := [][]byte{
		mkTag(TagScript, 0, metadata),
		mkTag(TagVideo, 0, avcSeq),
		mkTag(TagAudio, 0, aacSeq),
		mkTag(TagVideo, 0x01020304, avcKey), // extended timestamp byte
		mkTag(TagAudio, 40, aacRaw),
	}
	for _, tg := range tags {
		in.Write(tg)
	}
	fr := NewReader(&in, 1<<10)
	h, err := fr.ReadHeader()
	if err != nil || !bytes.Equal(h, flvHeader) {
		t.Fatalf("ReadHeader = %x, %v; want %x", h, err, flvHeader)
	}
	wantKinds := []Kind{KindMetadata, KindVideoSeq, KindAudioSeq, KindKeyframe, KindOther}
	for i, want := range tags {
		got, err := fr.ReadTag()
		if err != nil {
			t.Fatalf("tag %d: %v", i, err)
		}
		if !bytes.Equal(got.Data, want) || got.Kind != wantKinds[i] || got.Type != want[0] {
			t.Errorf("tag %d = %+v, want data %x kind %d", i, got, want, wantKinds[i])
		}
	}
	if _, err := fr.ReadTag(); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}

func TestReaderTimestamp(t *testing.T) {
	in := append(append([]byte(nil), flvHeader...), mkTag(TagVideo, 0x01020304, avcKey)...)
	fr := NewReader(bytes.NewReader(in), 100)
	fr.ReadHeader()
	tg, err := fr.ReadTag()
	if err != nil || tg.Timestamp != 0x01020304 {
		t.Fatalf("ReadTag = %#x, %v", tg.Timestamp, err)
	}
	if !bytes.Equal(tg.Body(), avcKey) {
		t.Errorf("Body = %x", tg.Body())
	}
}

func TestReaderErrors(t *testing.T) {
	withTag := func(tag []byte) []byte { return append(append([]byte(nil), flvHeader...), tag...) }
	big := mkTag(TagVideo, 0, make([]byte, 200))
	for _, tc := range []struct {
		name string
		in   []byte
		want error // of ReadHeader, or of the first ReadTag
	}{
		{"empty", nil, io.EOF},
		{"not flv", []byte("GET / HTTP/1.1\r\n\r\n"), ErrNotFLV},
		{"short header", flvHeader[:5], io.ErrUnexpectedEOF},
		{"no PreviousTagSize0", flvHeader[:9], io.ErrUnexpectedEOF},
		{"small DataOffset", []byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 8, 0, 0, 0, 0}, ErrNotFLV},
		{"huge DataOffset", []byte{'F', 'L', 'V', 1, 5, 0x7f, 0, 0, 0, 0, 0, 0, 0}, ErrNotFLV},
		{"clean end", flvHeader, io.EOF},
		{"tag too large", withTag(big), ErrTagTooLarge},
		{"truncated tag header", withTag(big[:5]), io.ErrUnexpectedEOF},
		{"truncated body", withTag(mkTag(TagVideo, 0, avcKey)[:15]), io.ErrUnexpectedEOF},
		{"no PreviousTagSize", withTag(mkTag(TagVideo, 0, avcKey)[:11+len(avcKey)]), io.ErrUnexpectedEOF},
	} {
		fr := NewReader(bytes.NewReader(tc.in), 100)
		_, err := fr.ReadHeader()
		if err == nil {
			_, err = fr.ReadTag()
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzFLVReader: any input parses without panicking, each tag within the
// bound and framed as its header says.
func FuzzFLVReader(f *testing.F) {
	f.Add(flvHeader)
	var s []byte
	s = append(s, flvHeader...)
	for _, tg := range [][]byte{mkTag(TagScript, 0, setData), mkTag(TagVideo, 0, avcSeq), mkTag(TagAudio, 0, aacSeq),
		mkTag(TagVideo, 1<<24, exHEVCKey), mkTag(TagVideo, 40, avcInter), mkTag(TagVideo, 80, exHEVCSeq)} {
		s = append(s, tg...)
	}
	f.Add(s)
	f.Add(append(append([]byte(nil), flvHeader...), 9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0))
	f.Add([]byte("FLV\x01\x05\x00\x00\x04\x00"))
	const bound = 1 << 12
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewReader(bytes.NewReader(in), bound)
		if _, err := fr.ReadHeader(); err != nil {
			return
		}
		// SkipTag sees the same tags, read in small pieces.
		sr := NewReader(bufio.NewReaderSize(bytes.NewReader(in), 16), bound)
		sr.ReadHeader()
		for {
			tg, err := fr.ReadTag()
			st, serr := sr.SkipTag()
			if (err == nil) != (serr == nil) {
				t.Fatalf("ReadTag: %v, SkipTag: %v", err, serr)
			}
			if err == nil && (st.Type != tg.Type || st.Timestamp != tg.Timestamp || st.Kind != tg.Kind || st.Data != nil) {
				t.Fatalf("SkipTag %+v, ReadTag %+v", st, tg)
			}
			if err != nil {
				return
			}
			if n := len(tg.Data); n > bound+tagHeaderSize+prevSizeLen || n < tagHeaderSize+prevSizeLen {
				t.Fatalf("tag of %d bytes", n)
			}
			if Classify(tg.Type, tg.Body()) != tg.Kind {
				t.Fatal("Kind differs from Classify")
			}
		}
	})
}
