package lockersim

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// phones is a stand-in SMS gateway for demos: the hub's --sms-url can point
// at the control API's /sms, which keeps the last maxTexts texts (the oldest
// goes when full) so a person can read the pickup codes the recipients got.
type phones struct {
	mu    sync.Mutex
	texts []Text
}

// Text is one SMS the hub sent to a recipient.
type Text struct {
	At   time.Time `json:"at"`
	To   string    `json:"to"`
	Text string    `json:"text"`
	ID   string    `json:"id"`
}

const maxTexts = 100

func (p *phones) receive(w http.ResponseWriter, r *http.Request) {
	var m Text
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&m); err != nil || m.To == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"code": "bad_request", "message": `want {"to","text","id"}`})
		return
	}
	m.At = time.Now().UTC()
	p.mu.Lock()
	if len(p.texts) == maxTexts {
		p.texts = append(p.texts[:0], p.texts[1:]...)
	}
	p.texts = append(p.texts, m)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"id": m.ID})
}

// list answers the texts, newest first, optionally for one number (?to=).
func (p *phones) list(w http.ResponseWriter, r *http.Request) {
	to := r.URL.Query().Get("to")
	p.mu.Lock()
	out := make([]Text, 0, len(p.texts))
	for i := len(p.texts) - 1; i >= 0; i-- {
		if to == "" || p.texts[i].To == to {
			out = append(out, p.texts[i])
		}
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}
