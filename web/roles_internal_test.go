package web

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/access"
)

// TestEveryRouteHasARoleRow: a new route needs a row in the role matrix, and
// a row needs a route.
func TestEveryRouteHasARoleRow(t *testing.T) {
	missing, stale := missingRoleRows(NewAPI(Deps{}).routes)
	if len(missing) > 0 {
		t.Errorf("routes without a row in the role matrix, so nobody may call them. Add these rows to roleMatrix in web/roles.go, "+
			"widened to who needs the route (roles: everyone, fleetOps, adminOnly or []string{…}; API clients: noClients, "+
			"anyClient or the access.Scope… they need), then run LOCKERHUB_UPDATE_DOCS=1 go test ./web -run TestAccessDoc "+
			"to update docs/access.md:\n%s",
			strings.Join(missing, "\n"))
	}
	if len(stale) > 0 {
		t.Errorf("rows of the role matrix (web/roles.go) without a route; remove them: %s", strings.Join(stale, ", "))
	}
}

const (
	accessDoc      = "../docs/access.md"
	accessDocBegin = "<!-- role matrix: generated from web/roles.go by TestAccessDocMatchesMatrix -->\n"
	accessDocEnd   = "<!-- end of role matrix -->\n"
)

// TestAccessDocMatchesMatrix keeps the table of docs/access.md ("every
// endpoint and which role may call it") the matrix the hub enforces.
// LOCKERHUB_UPDATE_DOCS=1 rewrites it.
func TestAccessDocMatchesMatrix(t *testing.T) {
	doc, err := os.ReadFile(accessDoc)
	require.NoError(t, err)
	s := string(doc)
	i, j := strings.Index(s, accessDocBegin), strings.Index(s, accessDocEnd)
	require.True(t, i >= 0 && j > i, "docs/access.md needs the markers %q and %q", accessDocBegin, accessDocEnd)
	want := NewAPI(Deps{}).AccessTable()
	got := s[i+len(accessDocBegin) : j]
	if got != want && os.Getenv("LOCKERHUB_UPDATE_DOCS") == "1" {
		require.NoError(t, os.WriteFile(accessDoc, []byte(s[:i+len(accessDocBegin)]+want+s[j:]), 0o644))
		return
	}
	require.Equal(t, want, got, "docs/access.md is not the role matrix of web/roles.go; run LOCKERHUB_UPDATE_DOCS=1 go test ./web -run TestAccessDoc")
}

func TestPermittedRefusesUnknownRolesAndRoutes(t *testing.T) {
	rt := route{method: "GET", path: "/api/v1/lockers"}
	require.False(t, permitted(principal("root", ""), rt))
	require.False(t, permitted(principal("admin", ""), route{method: "GET", path: "/api/v1/nowhere"}))
	require.True(t, permitted(principal("viewer", ""), rt))
}

func principal(role, scope string) access.Principal {
	p := access.Principal{Role: role}
	if scope != "" {
		p.Scopes = []string{scope}
	}
	return p
}
