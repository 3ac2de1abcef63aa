package dashboards_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the dashboards' JSON from the spec")

// grafana renders d as a dashboard that current Grafana (10, 11, 12) imports:
// one datasource variable (no datasource UID in the file), panels in rows
// of 24 columns, each with its description.
func grafana(d dashboard) map[string]any {
	ds := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	var panels []map[string]any
	x, y, rowH := 0, 0, 0
	for i, p := range d.Panels {
		w, h := p.Width, 8
		if w == 0 {
			w = 12
			if p.Kind == "stat" {
				w = 6
			}
		}
		if p.Kind == "stat" {
			h = 4
		}
		if x+w > 24 {
			x, y, rowH = 0, y+rowH, 0
		}
		var targets []map[string]any
		for j, t := range p.Targets {
			targets = append(targets, map[string]any{
				"refId": string(rune('A' + j)), "datasource": ds, "expr": t.Expr,
				"legendFormat": t.Legend, "range": true, "instant": false,
			})
		}
		if p.Targets[0].Legend == "" {
			targets[0]["legendFormat"] = "__auto"
		}
		panel := map[string]any{
			"id": i + 1, "type": p.Kind, "title": p.Title, "description": p.Description,
			"datasource": ds, "gridPos": map[string]int{"x": x, "y": y, "w": w, "h": h},
			"targets":     targets,
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": p.Unit}, "overrides": []any{}},
		}
		switch p.Kind {
		case "stat":
			panel["options"] = map[string]any{"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
				"colorMode": "value", "graphMode": "area", "textMode": "auto"}
		case "timeseries":
			panel["options"] = map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
				"tooltip": map[string]any{"mode": "multi", "sort": "desc"}}
		}
		panels = append(panels, panel)
		x += w
		rowH = max(rowH, h)
	}
	return map[string]any{
		"uid": d.UID, "title": d.Title, "description": d.Description, "tags": []string{"lockerhub"},
		"editable": true, "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "browser",
		"time":        map[string]string{"from": "now-6h", "to": "now"},
		"annotations": map[string]any{"list": []any{}},
		"templating": map[string]any{"list": []any{map[string]any{
			"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
			"hide": 0, "refresh": 1, "regex": "", "options": []any{},
		}}},
		"links": []any{map[string]any{"type": "dashboards", "tags": []string{"lockerhub"}, "asDropdown": true, "title": "lockerhub",
			"icon": "external link", "includeVars": false, "keepTime": true, "targetBlank": false, "tooltip": ""}},
		"panels": panels,
	}
}

func render(t *testing.T, d dashboard) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	require.NoError(t, enc.Encode(grafana(d)))
	return b.Bytes()
}

// TestDashboardsMatchTheSpec: the JSON files are the spec's (run with
// -update after changing it), each panel has a title and description, each
// dashboard has no datasource UID but the variable, and no query groups by
// a locker ID.
func TestDashboardsMatchTheSpec(t *testing.T) {
	uids := map[string]bool{}
	for _, d := range dashboards {
		require.False(t, uids[d.UID], "UID %s twice", d.UID)
		uids[d.UID] = true
		for _, p := range d.Panels {
			require.NotEmpty(t, p.Title)
			require.NotEmpty(t, p.Description, "%s: %s says what it shows and what good looks like", d.File, p.Title)
			require.NotEmpty(t, p.Targets, p.Title)
			for _, tg := range p.Targets {
				require.NotContains(t, tg.Expr, "locker_id", "%s: no locker IDs as labels", p.Title)
			}
		}
		want := render(t, d)
		if *update {
			require.NoError(t, os.WriteFile(d.File, want, 0o644))
			continue
		}
		got, err := os.ReadFile(d.File)
		require.NoError(t, err, "go test ./dashboards -update writes it")
		require.Equal(t, string(want), string(got), "%s differs from the spec: go test ./dashboards -update", d.File)
		require.NotContains(t, string(got), `"uid": "prometheus"`)
		require.Equal(t, 1, strings.Count(string(got), `"type": "datasource"`))
	}
	files, err := os.ReadDir(".")
	require.NoError(t, err)
	for _, f := range files {
		if strings.HasPrefix(f.Name(), "lockerhub-") && strings.HasSuffix(f.Name(), ".json") {
			found := false
			for _, d := range dashboards {
				found = found || d.File == f.Name()
			}
			require.True(t, found, fmt.Sprintf("%s is not in the spec", f.Name()))
		}
	}
}

// TestEveryMetricIsDocumented: each lockerhub_* metric the hub defines is in
// docs/metrics.md, so names and labels change only with a note there.
func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	require.NoError(t, err)
	name := regexp.MustCompile(`(?:Name|NewDesc\()\s*:?\s*"(lockerhub_[a-z0-9_]+)"`)
	found := 0
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (d.Name() == "scripts" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllSubmatch(src, -1) {
			if strings.HasSuffix(string(m[1]), "_") {
				continue // a prefix the name is built from (its metrics are listed by their full names)
			}
			found++
			require.True(t, strings.Contains(string(doc), "`"+string(m[1])+"`"), "%s defines %s: document it in docs/metrics.md", path, m[1])
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, found, 50)
}
