package web

import (
	"errors"
	"fmt"
	"math"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/lockerhub/lockerhub/access"
)

// SessionCookie is the dashboard's session cookie.
const SessionCookie = "lockerhub_session"

// Failed logins are limited per username and per remote address (an IPv6
// address counts by its /64). Behind a reverse proxy every login comes from
// the proxy's address, so the per-address limit is generous.
const (
	loginBurstPerUser = 5
	loginRefillUser   = time.Minute
	loginBurstPerAddr = 30
	loginRefillAddr   = 10 * time.Second
	loginMaxKeys      = 50_000
)

type loginLimits struct {
	users, addrs *access.Throttle
}

func newLoginLimits() *loginLimits {
	return &loginLimits{
		users: access.NewThrottle(loginBurstPerUser, loginRefillUser, loginMaxKeys),
		addrs: access.NewThrottle(loginBurstPerAddr, loginRefillAddr, loginMaxKeys),
	}
}

func (a *API) sessionRoutes() []route {
	return []route{
		{"POST", "/api/v1/session", true, a.login},
		{"GET", "/api/v1/session", false, a.whoami},
		{"DELETE", "/api/v1/session", false, a.logout},
	}
}

// sessionInfo is the answer of login and GET /api/v1/session.
type sessionInfo struct {
	User      string     `json:"user"`
	Role      string     `json:"role"`
	CSRFToken string     `json:"csrf_token,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Carrier limits the caller to that carrier's lockers.
	Carrier string `json:"carrier,omitempty"`
	// Can lists the routes ("METHOD /path") the caller may call, from the
	// role matrix, so the dashboard shows only what the caller can use.
	Can []string `json:"can"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	// A JSON content type cannot be sent cross-site without a CORS preflight
	// (which the hub never answers), so no other site can log a browser in.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the credentials as Content-Type: application/json")
		return
	}
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	user := access.NormalizeUsername(in.Username)
	if len(user) > 64 {
		user = user[:64]
	}
	addr := remoteKey(r.RemoteAddr)
	if ok, wait := a.logins.users.Take(user); !ok {
		tooMany(w, wait, "too many failed logins for this user")
		return
	}
	if ok, wait := a.logins.addrs.Take(addr); !ok {
		a.logins.users.Give(user)
		tooMany(w, wait, "too many failed logins from this address")
		return
	}
	sess, err := a.d.Access.Login(r.Context(), user, in.Password, r.RemoteAddr)
	switch {
	case errors.Is(err, access.ErrBadLogin):
		a.d.Logger.Warn("login failed", "user", user, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "bad_login", "unknown user or wrong password")
		return
	case errors.Is(err, access.ErrDisabled):
		a.logins.addrs.Give(addr)
		writeError(w, http.StatusForbidden, "disabled", "this user is disabled; ask an admin")
		return
	case err != nil:
		a.logins.users.Give(user)
		a.logins.addrs.Give(addr)
		a.internal(w, r, err)
		return
	}
	a.logins.users.Reset(user)
	a.logins.addrs.Give(addr)
	if old, err := r.Cookie(SessionCookie); err == nil {
		if err := a.d.Access.Logout(r.Context(), old.Value); err != nil {
			a.d.Logger.Warn("ending the previous session failed", "error", err)
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    sess.ID,
		Path:     "/",
		MaxAge:   int(access.SessionMax / time.Second),
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil,
	})
	w.Header().Set("Cache-Control", "no-store")
	a.d.Logger.Info("login", "user", user, "role", sess.User.Role, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, sessionInfo{User: sess.User.Username, Role: sess.User.Role, CSRFToken: sess.CSRFToken, ExpiresAt: &sess.ExpiresAt,
		Carrier: sess.User.Carrier, Can: a.can(sess.Principal())})
}

// whoami answers who the caller is; with the session cookie, also the CSRF
// token (so a reloaded dashboard page gets it back).
func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s, ok := sessionFrom(r.Context()); ok {
		writeJSON(w, http.StatusOK, sessionInfo{User: s.User.Username, Role: s.User.Role, CSRFToken: s.CSRFToken, ExpiresAt: &s.ExpiresAt,
			Carrier: s.User.Carrier, Can: a.can(s.Principal())})
		return
	}
	p, _ := principalFrom(r.Context())
	writeJSON(w, http.StatusOK, sessionInfo{User: p.Name, Role: p.Role, Carrier: p.Carrier, Can: a.can(p)})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := a.d.Access.Logout(r.Context(), c.Value); err != nil {
			a.internal(w, r, err)
			return
		}
	}
	clearSessionCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

func tooMany(w http.ResponseWriter, wait time.Duration, what string) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	writeError(w, http.StatusTooManyRequests, "too_many_attempts", fmt.Sprintf("%s; try again in %d s", what, secs))
}

// remoteKey is what failed logins are counted by: the IP address, an IPv6
// address by its /64 (one host usually holds a whole /64).
func remoteKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
