package web

import "github.com/lockerhub/lockerhub/access"

// Allowed reports what the role matrix says of "METHOD /path" for a user
// role, or for an API client holding only scope (role access.RoleClient).
func Allowed(key, role, scope string) bool {
	var rt route
	for i := range len(key) {
		if key[i] == ' ' {
			rt = route{method: key[:i], path: key[i+1:]}
			break
		}
	}
	p := access.Principal{Role: role}
	if scope != "" {
		p.Scopes = []string{scope}
	}
	return permitted(p, rt)
}

// Public reports whether "METHOD /path" is a public route.
func (a *API) Public(key string) bool {
	for _, rt := range a.routes {
		if rt.method+" "+rt.path == key {
			return rt.public
		}
	}
	return false
}
