package web

import (
	"net/http"

	"github.com/lockerhub/lockerhub/fleet"
)

// DeviceAPI is the handler of the device-facing HTTPS listener (--device-addr):
// enrolment, certificate renewal, firmware downloads and the firmware signing key.
type DeviceAPI struct {
	api *API
	mux *http.ServeMux
}

// NewDeviceAPI builds the device handler.
func NewDeviceAPI(d Deps) *DeviceAPI {
	a := &API{d: d}
	m := http.NewServeMux()
	m.HandleFunc(DeviceRoutes()[0], a.enroll)
	m.HandleFunc(DeviceRoutes()[1], a.renew)
	m.HandleFunc(DeviceRoutes()[2], a.otaDownload)
	m.HandleFunc(DeviceRoutes()[3], a.otaKey)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such device endpoint: "+r.Method+" "+r.URL.Path)
	})
	return &DeviceAPI{api: a, mux: m}
}

func (d *DeviceAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	r = d.api.requestActor(w, r) // the locker is the actor of enrolment and renewal (fleet records it)
	d.mux.ServeHTTP(w, r)
}

// DeviceRoutes lists the device listener's API routes (for the OpenAPI check).
func DeviceRoutes() []string {
	return []string{"POST /api/v1/enroll", "POST /api/v1/renew", "GET /api/v1/ota/artifacts/{id}/download", "GET /api/v1/ota/key"}
}

// enroll exchanges a one-time token and a CSR for the locker's certificate.
func (a *API) enroll(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
		CSR   string `json:"csr"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	c, err := a.d.Registry.Enroll(r.Context(), in.Token, []byte(in.CSR))
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	a.d.Logger.Info("locker enrolled", "serial", c.Serial, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, c)
}

// renew gives a locker a new certificate for a new CSR. The locker
// authenticates with its current client certificate, which the TLS layer has
// verified against the hub CA and the revocation list.
func (a *API) renew(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		writeError(w, http.StatusUnauthorized, "certificate_required", "renewal needs the locker's current client certificate")
		return
	}
	lockerID := r.TLS.VerifiedChains[0][0].Subject.CommonName
	var in struct {
		CSR string `json:"csr"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	c, err := a.d.Registry.Renew(fleet.DeviceContext(r.Context(), lockerID), lockerID, []byte(in.CSR))
	if err != nil {
		a.domainError(w, r, err)
		return
	}
	a.d.Logger.Info("certificate renewed", "locker", lockerID, "serial", c.Serial, "not_after", c.NotAfter)
	writeJSON(w, http.StatusOK, c)
}
