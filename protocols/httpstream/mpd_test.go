package httpstream

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// nginxMPD is what nginx-rtmp's dash module writes for stream "s" of app
// "live" (/live/s.mpd, segments /live/s-<time>.m4v|m4a next to it).
const nginxMPD = `<?xml version="1.0"?>
<MPD
    type="dynamic"
    xmlns="urn:mpeg:dash:schema:mpd:2011"
    availabilityStartTime="2024-01-01T00:00:00Z"
    publishTime="2024-01-01T00:00:10Z"
    minimumUpdatePeriod="PT2S"
    minBufferTime="PT2S"
    timeShiftBufferDepth="PT20S"
    profiles="urn:hbbtv:dash:profile:isoff-live:2012,urn:mpeg:dash:profile:isoff-live:2011"
    xmlns:xsi="http://www.w3.org/2011/XMLSchema-instance"
    xsi:schemaLocation="urn:mpeg:DASH:schema:MPD:2011 DASH-MPD.xsd">
  <Period start="PT0S" id="dash">
    <AdaptationSet
        id="1"
        segmentAlignment="true"
        maxWidth="320"
        maxHeight="240"
        maxFrameRate="25">
      <Representation
          id="s_H264"
          mimeType="video/mp4"
          codecs="avc1.42c00d"
          width="320"
          height="240"
          frameRate="25"
          sar="1:1"
          startWithSAP="1"
          bandwidth="0">
        <SegmentTemplate
            presentationTimeOffset="0"
            timescale="1000"
            media="s-$Time$.m4v"
            initialization="s-init.m4v">
          <SegmentTimeline>
             <S t="0" d="2000"/>
             <S t="2000" d="2000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet
        id="2"
        segmentAlignment="true">
      <AudioChannelConfiguration
          schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
          value="1"/>
      <Representation
          id="s_AAC"
          mimeType="audio/mp4"
          codecs="mp4a.40.2"
          audioSamplingRate="44100"
          startWithSAP="1"
          bandwidth="64000">
        <SegmentTemplate
            presentationTimeOffset="0"
            timescale="1000"
            media="s-$Time$.m4a"
            initialization="s-init.m4a">
          <SegmentTimeline>
             <S t="0" d="2000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
`

// srsMPD is what SRS's dash writes for /live/livestream.mpd: segments under
// /live/livestream/ named by a relative BaseURL.
const srsMPD = `<?xml version="1.0" encoding="utf-8"?>
<MPD profiles="urn:mpeg:dash:profile:isoff-live:2011,http://dashif.org/guidelines/dash-if-simple"
    ns1:schemaLocation="urn:mpeg:dash:schema:mpd:2011 DASH-MPD.xsd"
    xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:ns1="http://www.w3.org/2001/XMLSchema-instance"
    type="dynamic" minimumUpdatePeriod="PT30S" timeShiftBufferDepth="PT30S" availabilityStartTime="1970-01-01T00:00:00Z"
    maxSegmentDuration="PT3S" minBufferTime="PT3S" >
    <BaseURL>livestream/</BaseURL>
    <Period start="PT0S">
        <AdaptationSet mimeType="audio/mp4" segmentAlignment="true" startWithSAP="1">
            <Representation id="audio" bandwidth="48000" codecs="mp4a.40.2">
                <SegmentTemplate initialization="$RepresentationID$-init.mp4" media="$RepresentationID$-$Number$.m4s" startNumber="0" timescale="1000">
                    <SegmentTimeline>
                        <S t="1700000000000" d="3000" r="9" />
                    </SegmentTimeline>
                </SegmentTemplate>
            </Representation>
        </AdaptationSet>
        <AdaptationSet mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
            <Representation id="video" bandwidth="800000" codecs="avc1.64001e" width="768" height="320">
                <SegmentTemplate initialization="$RepresentationID$-init.mp4" media="$RepresentationID$-$Number$.m4s" startNumber="0" timescale="1000">
                    <SegmentTimeline>
                        <S t="1700000000000" d="3000" r="9" />
                    </SegmentTimeline>
                </SegmentTemplate>
            </Representation>
        </AdaptationSet>
    </Period>
</MPD>
`

// dirMapper maps URLs on origin:8080 to "/D[<dir>]<rest>" the way the
// server's dashMapper splits them, so that tests can read the result.
func dirMapper(u *url.URL) (string, bool) {
	if !onOrigin(u, "origin:8080") {
		return "", false
	}
	p := u.EscapedPath()
	cut := len(p)
	if i := strings.IndexByte(p, '$'); i >= 0 {
		cut = i
	}
	d := strings.LastIndexByte(p[:cut], '/') + 1
	out := "/D[" + p[:d] + "]" + p[d:]
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out, true
}

func TestRewriteMPD(t *testing.T) {
	tests := []struct {
		name, base, in string
		want           []string // substrings of the output, in order
		unchanged      []string // substrings that must survive
		absent         []string
	}{
		{
			name:      "nginx-rtmp",
			base:      "http://origin:8080/live/s.mpd",
			in:        nginxMPD,
			want:      []string{"xsi:schemaLocation", "<BaseURL>/D[/live/]</BaseURL><Period start=\"PT0S\" id=\"dash\">", `media="s-$Time$.m4v"`, `media="s-$Time$.m4a"`},
			unchanged: []string{`<S t="2000" d="2000"/>`, `initialization="s-init.m4v"`, `<?xml version="1.0"?>`},
		},
		{
			name:      "srs",
			base:      "http://origin:8080/live/livestream.mpd",
			in:        srsMPD,
			want:      []string{"<BaseURL>/D[/live/livestream/]</BaseURL>", `<Period start="PT0S">`},
			unchanged: []string{`media="$RepresentationID$-$Number$.m4s"`, `initialization="$RepresentationID$-init.mp4"`, `xmlns:ns1=`},
			absent:    []string{"<BaseURL>livestream/</BaseURL>"},
		},
		{
			name: "existing absolute and nested BaseURLs",
			base: "http://origin:8080/live/s.mpd?auth=1",
			in: `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><ProgramInformation><Title>t</Title></ProgramInformation>` +
				`<BaseURL>http://origin:8080/live/s/</BaseURL><BaseURL>http://cdn.example.com/live/s/</BaseURL>` +
				`<Period><BaseURL>/abs/</BaseURL><AdaptationSet><BaseURL> video/ </BaseURL>` +
				`<SegmentTemplate media="../x/$Number%05d$.m4s" initialization="http://origin:8080/init/$RepresentationID$/i.mp4?a=1&amp;b=2" index="i.sidx"/>` +
				`<Representation id="v"><SegmentList><Initialization sourceURL="/live/init.mp4"/><SegmentURL media="seg1.m4s"/></SegmentList></Representation>` +
				`</AdaptationSet></Period></MPD>`,
			want: []string{
				"<ProgramInformation><Title>t</Title></ProgramInformation>",
				"<BaseURL>/D[/live/s/]</BaseURL>",
				"<BaseURL>http://cdn.example.com/live/s/</BaseURL>",
				"<BaseURL>/D[/abs/]</BaseURL>",
				"<BaseURL>/D[/abs/video/]</BaseURL>",
				`media="/D[/abs/x/]$Number%05d$.m4s"`,
				`initialization="/D[/init/]$RepresentationID$/i.mp4?a=1&amp;b=2"`,
				`index="i.sidx"`,
				`sourceURL="/D[/live/]init.mp4"`,
				`<SegmentURL media="seg1.m4s"/>`,
			},
			absent: []string{"<BaseURL>/D[/live/]</BaseURL>"},
		},
		{
			name: "prefixed elements and self-closing BaseURL",
			base: "http://origin:8080/live/s.mpd",
			in:   `<d:MPD xmlns:d="urn:mpeg:dash:schema:mpd:2011"><d:BaseURL/><d:Period><d:AdaptationSet><d:SegmentTemplate media="/live/$Number$.m4s"/></d:AdaptationSet></d:Period></d:MPD>`,
			want: []string{"<d:BaseURL>/D[/live/]</d:BaseURL><d:Period>", `media="/D[/live/]$Number$.m4s"`},
		},
		{
			name: "no period",
			base: "http://origin:8080/a/b/s.mpd",
			in:   `<MPD type="static"></MPD>`,
			want: []string{`<MPD type="static"><BaseURL>/D[/a/b/]</BaseURL></MPD>`},
		},
		{
			name:      "comments and cdata kept",
			base:      "http://origin:8080/live/s.mpd",
			in:        "<MPD><!-- <BaseURL>x</BaseURL> --><Period><![CDATA[<BaseURL>y</BaseURL>]]></Period></MPD>",
			want:      []string{"<MPD><!-- <BaseURL>x</BaseURL> --><BaseURL>/D[/live/]</BaseURL><Period><![CDATA[<BaseURL>y</BaseURL>]]></Period></MPD>"},
			unchanged: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rewriteMPD([]byte(tt.in), mustURL(t, tt.base), dirMapper)
			if err != nil {
				t.Fatal(err)
			}
			out := string(got)
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tt.unchanged {
				if !strings.Contains(out, w) {
					t.Errorf("output lost %q:\n%s", w, out)
				}
			}
			for _, w := range tt.absent {
				if strings.Contains(out, w) {
					t.Errorf("output still has %q:\n%s", w, out)
				}
			}
			if strings.Count(out, "<BaseURL>/D[") == 0 && !strings.Contains(out, "BaseURL>/D[") {
				t.Errorf("no mapped BaseURL:\n%s", out)
			}
		})
	}
}

func TestRewriteMPDRejects(t *testing.T) {
	base := mustURL(t, "http://origin:8080/live/s.mpd")
	for _, in := range []string{"", "#EXTM3U\n", "<html></html>", "<MPD>", "<MPD></Period></MPD>", "<MPD></MPD><MPD></MPD>", `<?xml version="1.0" encoding="latin1"?><MPD/>`} {
		if _, err := rewriteMPD([]byte(in), base, dirMapper); !errors.Is(err, ErrNotMPD) {
			t.Errorf("%q: err = %v, want ErrNotMPD", in, err)
		}
	}
}

// With the server's mapper, the inserted BaseURL carries a directory token
// for the MPD's directory on the origin.
func TestDASHMapperTokens(t *testing.T) {
	s := newTestServer(t, nil)
	out, err := rewriteMPD([]byte(srsMPD), mustURL(t, "http://127.0.0.1:8080/live/livestream.mpd"), s.dashMapper(s.tokens, "127.0.0.1:8080"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(out), "<BaseURL>"+dashPrefix)
	tokStr, rest, _ := strings.Cut(after, "/")
	tok, err := s.tokens.Decode(tokStr, s.now())
	if err != nil || tok.Kind != TokenDir || tok.Origin != "127.0.0.1:8080" || tok.Path != "/live/livestream/" || !strings.HasPrefix(rest, "</BaseURL>") {
		t.Fatalf("token %+v %v, rest %q", tok, err, rest)
	}
}

func FuzzRewriteMPD(f *testing.F) {
	f.Add(nginxMPD)
	f.Add(srsMPD)
	f.Add(`<MPD><BaseURL/><Period><SegmentTemplate media="/a/$Number%05d$.m4s"/></Period></MPD>`)
	f.Add(`<d:MPD xmlns:d="x"><d:BaseURL>http://127.0.0.1:8080/../x/</d:BaseURL></d:MPD>`)
	s := newTestServer(f, nil)
	base, _ := url.Parse("http://127.0.0.1:8080/live/s.mpd")
	f.Fuzz(func(t *testing.T, in string) {
		m := s.dashMapper(s.tokens, "127.0.0.1:8080")
		out, err := rewriteMPD([]byte(in), base, m)
		if err != nil {
			return
		}
		// The output is still a well-formed MPD that rewrites again.
		if _, err := rewriteMPD(out, base, m); err != nil {
			t.Fatalf("output not accepted again: %v\nin:  %q\nout: %q", err, in, out)
		}
	})
}
