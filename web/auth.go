package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/lockerhub/lockerhub/access"
	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/fleet"
)

// Authentication: every non-public route takes either a bearer token
// (hubctl, partners: "Authorization: Bearer lh_…") or the dashboard's session
// cookie. A request with a cookie that changes something (any method but GET
// and HEAD) must also carry the session's CSRF token in X-CSRF-Token: the
// cookie is SameSite=Strict already, the header is the second lock. Bearer
// requests need no CSRF token (a browser never adds that header by itself).

// CSRFHeader carries the session's CSRF token on non-GET requests.
const CSRFHeader = "X-CSRF-Token"

type principalKey struct{}
type sessionKey struct{}

// principalFrom returns who is calling; ok is false on public routes.
func principalFrom(ctx context.Context) (access.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(access.Principal)
	return p, ok
}

// sessionFrom returns the caller's session when it came with the cookie.
func sessionFrom(ctx context.Context) (access.Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(access.Session)
	return s, ok
}

// authenticate wraps the handler of a non-public route.
func (a *API) authenticate(rt route) http.HandlerFunc {
	next := rt.h
	return func(w http.ResponseWriter, r *http.Request) {
		p, sess, ok := a.identify(w, r)
		if !ok {
			return
		}
		ctx := context.WithValue(r.Context(), principalKey{}, p)
		ctx = audit.WithActor(ctx, principalActor(r, p)) // who, for the audit records of this request's changes
		if sess != nil {
			if !safeMethod(r.Method) && !validCSRF(r.Header.Get(CSRFHeader), sess.CSRFToken) {
				writeError(w, http.StatusForbidden, "csrf", "a request with the session cookie that changes something needs the session's csrf_token in the "+CSRFHeader+" header")
				return
			}
			ctx = context.WithValue(ctx, sessionKey{}, *sess)
		}
		if !permitted(p, rt) { // web/roles.go
			writeError(w, http.StatusForbidden, "forbidden", denial(p, rt))
			return
		}
		if carrierScoped(rt.path) && !a.inCallerScope(r.WithContext(ctx), r.PathValue("id")) {
			// As for a locker that does not exist: no existence leak.
			a.domainError(w, r, fmt.Errorf("%w: locker %s", fleet.ErrNotFound, r.PathValue("id")))
			return
		}
		next(w, r.WithContext(ctx))
	}
}

// identify finds the caller from the bearer token or the session cookie, or
// answers 401 itself. A bearer token wins over a cookie.
func (a *API) identify(w http.ResponseWriter, r *http.Request) (access.Principal, *access.Session, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "the Authorization header must be \"Bearer <token>\"")
			return access.Principal{}, nil, false
		}
		p, err := a.d.Access.Authenticate(r.Context(), strings.TrimSpace(tok))
		if errors.Is(err, access.ErrUnauthenticated) {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "the bearer token is unknown or revoked")
			return access.Principal{}, nil, false
		}
		if err != nil {
			a.internal(w, r, err)
			return access.Principal{}, nil, false
		}
		return p, nil, true
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "unauthenticated",
			"log in (POST /api/v1/session) or send Authorization: Bearer <token> (hubctl reads var/admin.token)")
		return access.Principal{}, nil, false
	}
	sess, err := a.d.Access.Session(r.Context(), c.Value)
	if errors.Is(err, access.ErrNoSession) {
		clearSessionCookie(w, r)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "the session has ended; log in again")
		return access.Principal{}, nil, false
	}
	if err != nil {
		a.internal(w, r, err)
		return access.Principal{}, nil, false
	}
	return sess.Principal(), &sess, true
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

func validCSRF(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// lockerInScope reports whether locker id is assigned to carrier, from the
// overview's rows (memory) or else the registry.
func (a *API) lockerInScope(r *http.Request, carrier, id string) bool {
	if a.d.Overview != nil {
		row, ok := a.d.Overview.Row(id)
		return ok && slices.Contains(row.Carriers, carrier)
	}
	l, err := a.d.Registry.Get(r.Context(), id)
	return err == nil && slices.Contains(l.CarrierAccess, carrier)
}

// inCallerScope reports whether the caller may see locker id: always for a
// caller of the whole fleet, else when the locker is assigned to the caller's
// carrier. Routes that name a locker other than by /api/v1/lockers/{id}
// (e.g. a command by its id) answer 404 when it is false, as for something
// that does not exist; lists leave such lockers out (see callerCarrier).
func (a *API) inCallerScope(r *http.Request, id string) bool {
	c := callerCarrier(r)
	return c == "" || a.lockerInScope(r, c, id)
}

// callerCarrier is the carrier the caller is limited to, "" for the whole fleet.
func callerCarrier(r *http.Request) string {
	p, _ := principalFrom(r.Context())
	return p.Carrier
}

// noCarrier matches no locker: carrier names never hold '|'.
const noCarrier = "|none|"

// scopeCarrier narrows a list's carrier filter to the caller's carrier: the
// caller's own when none was asked for, one that matches nothing when another
// carrier was asked for.
func scopeCarrier(r *http.Request, asked string) string {
	c := callerCarrier(r)
	switch {
	case c == "":
		return asked
	case asked == "" || asked == c:
		return c
	default:
		return noCarrier
	}
}
