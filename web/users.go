package web

import (
	"errors"
	"net/http"

	"github.com/lockerhub/lockerhub/access"
)

// User management and API clients (admins only; see web/roles.go).

func (a *API) userRoutes() []route {
	return []route{
		{"GET", "/api/v1/users", false, a.listUsers},
		{"POST", "/api/v1/users", false, a.createUser},
		{"GET", "/api/v1/users/{name}", false, a.getUser},
		{"PATCH", "/api/v1/users/{name}", false, a.updateUser},
		{"POST", "/api/v1/users/{name}/password", false, a.resetPassword},
		{"GET", "/api/v1/clients", false, a.listClients},
		{"POST", "/api/v1/clients", false, a.createClient},
		{"DELETE", "/api/v1/clients/{name}", false, a.revokeClient},
		{"PATCH", "/api/v1/clients/{name}", false, a.updateClient},
		{"GET", "/api/v1/tokens", false, a.listTokens},
		{"POST", "/api/v1/tokens", false, a.createToken},
		{"DELETE", "/api/v1/tokens/{id}", false, a.revokeToken},
	}
}

// accessError maps access errors to HTTP; anything else is a 500.
func (a *API) accessError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, access.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, access.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, access.ErrExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
	default:
		a.internal(w, r, err)
	}
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	us, err := a.d.Access.Users(r.Context())
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": us})
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := a.d.Access.User(r.Context(), r.PathValue("name"))
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// userCreated is a new user; Password is set only when the hub made it up.
type userCreated struct {
	access.User
	Password string `json:"password,omitempty"`
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username string `json:"username"`
		Role     string `json:"role"`
		Carrier  string `json:"carrier"`
		Password string `json:"password"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	generated := ""
	if in.Password == "" {
		generated = access.RandomPassword()
		in.Password = generated
	}
	u, err := a.d.Access.AddUser(r.Context(), access.NewUser{Username: in.Username, Password: in.Password, Role: in.Role, Carrier: in.Carrier})
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, userCreated{User: u, Password: generated})
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Role     *string `json:"role"`
		Carrier  *string `json:"carrier"`
		Disabled *bool   `json:"disabled"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	u, err := a.d.Access.UpdateUser(r.Context(), r.PathValue("name"), access.UserPatch{Role: in.Role, Carrier: in.Carrier, Disabled: in.Disabled})
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	if u.DisabledAt != nil || in.Role != nil || in.Carrier != nil {
		// The sessions are gone (disabled) or see other lockers now: the
		// open live streams end and reconnect under the new rules.
		a.endStreams(streamOwner(access.Principal{UserID: u.ID}))
	}
	writeJSON(w, http.StatusOK, u)
}

// resetPassword sets a user's password (generated when none is given) and
// ends the user's sessions.
func (a *API) resetPassword(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Password string `json:"password"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &in) {
		return
	}
	generated := ""
	if in.Password == "" {
		generated = access.RandomPassword()
		in.Password = generated
	}
	u, err := a.d.Access.User(r.Context(), r.PathValue("name"))
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	if err := a.d.Access.SetPassword(r.Context(), u.Username, in.Password); err != nil {
		a.accessError(w, r, err)
		return
	}
	a.endStreams(streamOwner(access.Principal{UserID: u.ID}))
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, userCreated{User: u, Password: generated})
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	cs, err := a.d.Access.Clients(r.Context())
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": cs})
}

func (a *API) createClient(w http.ResponseWriter, r *http.Request) {
	var in access.NewClient
	if !readJSON(w, r, &in) {
		return
	}
	c, tok, err := a.d.Access.AddClient(r.Context(), in)
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, struct {
		access.Client
		Token string `json:"token"`
	}{c, tok})
}

func (a *API) updateClient(w http.ResponseWriter, r *http.Request) {
	var in access.ClientPatch
	if !readJSON(w, r, &in) {
		return
	}
	c, err := a.d.Access.UpdateClient(r.Context(), r.PathValue("name"), in)
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) revokeClient(w http.ResponseWriter, r *http.Request) {
	c, err := a.d.Access.RevokeClient(r.Context(), r.PathValue("name"))
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	a.endStreams(streamOwner(access.Principal{ClientID: c.ID}))
	writeJSON(w, http.StatusOK, c)
}

// Admin bearer tokens (hubctl token …): listed without the token, made with
// the token shown once, revoked for good.

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := a.d.Access.Tokens(r.Context())
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	t, tok, err := a.d.Access.NewAdminToken(r.Context(), in.Name)
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, struct {
		access.Token
		Secret string `json:"token"`
	}{t, tok})
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "token")
	if !ok {
		return
	}
	t, err := a.d.Access.RevokeToken(r.Context(), id)
	if err != nil {
		a.accessError(w, r, err)
		return
	}
	a.endStreams(streamOwner(access.Principal{TokenID: t.ID}))
	writeJSON(w, http.StatusOK, t)
}
