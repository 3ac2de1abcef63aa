package lockersim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// The control API lets tests and people act at a simulated locker. JSON in and
// out; errors are {"code","message"}. Actions answer with the locker's view.
//
//	GET  /stats                                  counters of the whole simulation
//	GET  /memory[?gc=1]                          RSS, Go heap, goroutines, per locker (gc=1: after a GC)
//	GET  /debug/pprof/…                          Go profiles (heap, goroutine, profile)
//	GET  /lockers                                every locker (no cells)
//	GET  /lockers/{id}                           one locker with its cells
//	POST /lockers/{id}/cells/{cell}/open         {"cause":"code:p-1"} optional; no cause = forced
//	POST /lockers/{id}/cells/{cell}/close
//	POST /lockers/{id}/cells/{cell}/deposit      put a parcel in (door must be open)
//	POST /lockers/{id}/cells/{cell}/take         take it out (door must be open)
//	POST /lockers/{id}/code                      {"code":"48213907"}: online, ask code.check (answer: the hub's, "path":"online");
//	                                             offline or no answer in --ask-timeout, check it against the locker's own
//	                                             list ("path":"offline", "opened", "cell", "parcel" or "error")
//	POST /lockers/{id}/barcode                   {"barcode":"…","purpose":"…","cell":"…"}: ask barcode.check (purpose dropoff, pickup, collect; cell optional for dropoff)
//	POST /lockers/{id}/mains/cut                 event power_lost + state
//	POST /lockers/{id}/mains/restore             event power_restored + state
//	POST /lockers/{id}/tamper                    event tamper
//	POST /lockers/{id}/offline                   {"seconds":N}: drop the link for N s (messages queue)
//	POST /lockers/{id}/online                    end an offline period now
//	POST /lockers/{id}/reboot                    drop the link, boot+1, reconnect
//	GET  /lockers/{id}/pos                       the POS terminal: mode, the charges it handled (pos.go)
//	POST /lockers/{id}/pos                       {"mode":"approve|decline|timeout|none","reason":"…"}: set the terminal's behaviour
//	POST /sms                                    a stand-in SMS gateway for demos (the hub's --sms-url): {"to","text","id"}
//	GET  /sms[?to=NUMBER]                        the last 100 texts it got, newest first (the recipients' pickup codes)
func (s *Sim) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sms", s.phones.receive)
	mux.HandleFunc("GET /sms", s.phones.list)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.stats.Snapshot())
	})
	mux.HandleFunc("GET /memory", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, memoryReport(r.URL.Query().Get("gc") == "1", len(s.lockers)))
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /lockers", func(w http.ResponseWriter, r *http.Request) {
		views := make([]LockerView, 0, len(s.lockers))
		for _, l := range s.lockers {
			views = append(views, l.View(false))
		}
		writeJSON(w, http.StatusOK, map[string]any{"lockers": views})
	})
	mux.HandleFunc("GET /lockers/{id}", s.withLocker(func(l *Locker, r *http.Request) (any, error) {
		return l.View(true), nil
	}))
	cellAction := func(act func(l *Locker, cell string, r *http.Request) error) http.HandlerFunc {
		return s.withLocker(func(l *Locker, r *http.Request) (any, error) {
			if err := act(l, r.PathValue("cell"), r); err != nil {
				return nil, err
			}
			return l.View(true), nil
		})
	}
	mux.HandleFunc("POST /lockers/{id}/cells/{cell}/open", cellAction(func(l *Locker, cell string, r *http.Request) error {
		var body struct {
			Cause string `json:"cause"`
		}
		if err := readJSON(r, &body); err != nil {
			return err
		}
		return l.OpenDoor(cell, body.Cause)
	}))
	mux.HandleFunc("POST /lockers/{id}/cells/{cell}/close", cellAction(func(l *Locker, cell string, r *http.Request) error {
		return l.CloseDoor(cell)
	}))
	mux.HandleFunc("POST /lockers/{id}/cells/{cell}/deposit", cellAction(func(l *Locker, cell string, r *http.Request) error {
		return l.SetOccupied(cell, true)
	}))
	mux.HandleFunc("POST /lockers/{id}/cells/{cell}/take", cellAction(func(l *Locker, cell string, r *http.Request) error {
		return l.SetOccupied(cell, false)
	}))
	mux.HandleFunc("POST /lockers/{id}/code", s.withLocker(func(l *Locker, r *http.Request) (any, error) {
		var body struct {
			Code string `json:"code"`
		}
		if err := readJSON(r, &body); err != nil {
			return nil, err
		}
		if body.Code == "" {
			return nil, badRequest(`body must be {"code":"…"}`)
		}
		return l.EnterCode(r.Context(), body.Code, s.cfg.AskTimeout), nil
	}))
	mux.HandleFunc("POST /lockers/{id}/barcode", s.withLocker(func(l *Locker, r *http.Request) (any, error) {
		var body protocol.BarcodeCheckParams
		if err := readJSON(r, &body); err != nil {
			return nil, err
		}
		if body.Barcode == "" {
			return nil, badRequest(`body must be {"barcode":"…","purpose":"dropoff|pickup|collect","cell":"A01"} (purpose and cell optional)`)
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.AskTimeout)
		defer cancel()
		res, err := l.ScanBarcode(ctx, body)
		if err != nil {
			return nil, &apiError{status: http.StatusGatewayTimeout, Code: "timeout", Message: err.Error()}
		}
		return res, nil
	}))
	action := func(act func(l *Locker, r *http.Request) error) http.HandlerFunc {
		return s.withLocker(func(l *Locker, r *http.Request) (any, error) {
			if err := act(l, r); err != nil {
				return nil, err
			}
			return l.View(true), nil
		})
	}
	mux.HandleFunc("POST /lockers/{id}/mains/cut", action(func(l *Locker, r *http.Request) error { return l.SetMains(false) }))
	mux.HandleFunc("POST /lockers/{id}/mains/restore", action(func(l *Locker, r *http.Request) error { return l.SetMains(true) }))
	mux.HandleFunc("POST /lockers/{id}/tamper", action(func(l *Locker, r *http.Request) error { l.Tamper(); return nil }))
	mux.HandleFunc("POST /lockers/{id}/offline", action(func(l *Locker, r *http.Request) error {
		var body struct {
			Seconds float64 `json:"seconds"`
		}
		if err := readJSON(r, &body); err != nil {
			return err
		}
		if body.Seconds <= 0 || body.Seconds > 86400 {
			return badRequest(`body must be {"seconds":N} with 0 < N ≤ 86400`)
		}
		l.GoOffline(time.Duration(body.Seconds * float64(time.Second)))
		return nil
	}))
	mux.HandleFunc("POST /lockers/{id}/online", action(func(l *Locker, r *http.Request) error { l.ComeOnline(); return nil }))
	mux.HandleFunc("POST /lockers/{id}/reboot", action(func(l *Locker, r *http.Request) error { l.Reboot(); return nil }))
	mux.HandleFunc("GET /lockers/{id}/pos", s.withLocker(func(l *Locker, r *http.Request) (any, error) { return l.POS(), nil }))
	mux.HandleFunc("POST /lockers/{id}/pos", s.withLocker(func(l *Locker, r *http.Request) (any, error) {
		var body struct {
			Mode   string `json:"mode"`
			Reason string `json:"reason"`
		}
		if err := readJSON(r, &body); err != nil {
			return nil, err
		}
		if err := l.SetPOS(body.Mode, body.Reason); err != nil {
			return nil, err
		}
		return l.POS(), nil
	}))
	return mux
}

type apiError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(msg string) error {
	return &apiError{status: http.StatusBadRequest, Code: "bad_request", Message: msg}
}

func (s *Sim) withLocker(h func(l *Locker, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l := s.byID[r.PathValue("id")]
		if l == nil {
			writeJSON(w, http.StatusNotFound, &apiError{Code: "not_found", Message: fmt.Sprintf("no simulated locker %q", r.PathValue("id"))})
			return
		}
		out, err := h(l, r)
		if err != nil {
			var ae *apiError
			switch {
			case errors.As(err, &ae):
			case errors.Is(err, ErrUnknownCell):
				ae = &apiError{status: http.StatusNotFound, Code: "unknown_cell", Message: err.Error()}
			case errors.Is(err, ErrConflict):
				ae = &apiError{status: http.StatusConflict, Code: "conflict", Message: err.Error()}
			default:
				ae = &apiError{status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
			}
			writeJSON(w, ae.status, ae)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func readJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return badRequest(err.Error())
	}
	if len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return badRequest("malformed JSON body: " + err.Error())
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// MemoryReport is what GET /memory answers: the simulator's own footprint.
type MemoryReport struct {
	Lockers        int     `json:"lockers"`
	RSSMiB         float64 `json:"rss_mib"`
	HeapInuseMiB   float64 `json:"heap_inuse_mib"`
	StackInuseMiB  float64 `json:"stack_inuse_mib"`
	Goroutines     int     `json:"goroutines"`
	RSSPerLockerKi float64 `json:"rss_per_locker_kib"`
}

func memoryReport(gc bool, lockers int) MemoryReport {
	if gc {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r := MemoryReport{
		Lockers:       lockers,
		RSSMiB:        rssMiB(),
		HeapInuseMiB:  round2(float64(ms.HeapInuse) / (1 << 20)),
		StackInuseMiB: round2(float64(ms.StackInuse) / (1 << 20)),
		Goroutines:    runtime.NumGoroutine(),
	}
	if lockers > 0 {
		r.RSSPerLockerKi = round2(r.RSSMiB * 1024 / float64(lockers))
	}
	return r
}
