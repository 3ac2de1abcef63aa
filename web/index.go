package web

import (
	"html/template"
	"net/http"
)

// The dashboard comes with the fleet model; until then the root page says
// what this hub serves and how many lockers it sees.
var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>lockerhub</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#1d2433}
code{background:#eef1f6;padding:.1rem .3rem;border-radius:3px}.n{font-size:2rem;font-weight:600}
.row{display:flex;gap:2rem;margin:1.5rem 0}.row div{border:1px solid #d5dbe5;border-radius:8px;padding:1rem 1.5rem}</style>
</head><body>
<h1>lockerhub</h1>
<div class="row"><div><div class="n">{{.Online}}</div>lockers online</div><div><div class="n">{{.Registered}}</div>lockers registered</div></div>
<ul>
<li><a href="/api/v1/openapi.json">API description</a> (OpenAPI 3.1); call it with <code>hubctl api GET /api/v1/lockers</code></li>
<li><a href="/metrics">Prometheus metrics</a>, <a href="/readyz">readiness</a></li>
</ul>
<p>The live fleet dashboard is not built yet. The admin credential is in the hub's data directory (<code>admin.token</code>).</p>
</body></html>`))

func (a *API) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = indexPage.Execute(w, struct{ Online, Registered int }{a.d.Registry.CountOnline(), a.d.Registry.Count()})
}
