package video_test

import (
	"errors"
	"testing"

	"github.com/lockerhub/lockerhub/video"
)

// FuzzSDP: the checks of viewers' offers (HTTP) and lockers' answers
// (device input) never panic, and a refusal is always ErrBadOffer.
func FuzzSDP(f *testing.F) {
	f.Add("")
	f.Add("v=0\r\n")
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\na=rtpmap:96 VP8/90000\r\n")
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n")
	f.Add("v=0\r\nm=video 9 RTP 96\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		if err := video.ValidateOffer(s); err != nil && !errors.Is(err, video.ErrBadOffer) {
			t.Fatalf("offer refused without ErrBadOffer: %v", err)
		}
		if ans, err := video.ParseAnswer(s); err == nil && ans != s {
			t.Fatal("an accepted answer must come back unchanged")
		}
	})
}
