package video

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// MaxSDP bounds an SDP offer or answer (a browser's offer is 4–8 KiB).
const MaxSDP = 64 << 10

// ValidateOffer checks a viewer's SDP offer before any peer connection is
// made: it must parse and offer video. Errors wrap ErrBadOffer.
func ValidateOffer(offer string) error {
	if err := checkSDP(offer); err != nil {
		return fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	return nil
}

// ParseAnswer checks a locker's SDP answer (device input) and returns it.
func ParseAnswer(answer string) (string, error) {
	if err := checkSDP(answer); err != nil {
		return "", err
	}
	return answer, nil
}

func checkSDP(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return fmt.Errorf("empty SDP")
	case len(s) > MaxSDP:
		return fmt.Errorf("SDP of %d bytes (at most %d)", len(s), MaxSDP)
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return fmt.Errorf("SDP does not parse: %v", err)
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "video" && m.MediaName.Port.Value != 0 {
			if _, ok := m.Attribute("ice-ufrag"); !ok {
				if _, ok := d.Attribute("ice-ufrag"); !ok {
					return fmt.Errorf("the video section has no ICE credentials (a=ice-ufrag)")
				}
			}
			return nil
		}
	}
	return fmt.Errorf("no video section (m=video) in the SDP")
}
