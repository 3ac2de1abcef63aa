package web

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenAPIMatchesRoutes keeps the document partners read in step with the
// routes the hub serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(OpenAPI(), &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	served := append(NewAPI(Deps{}).Routes(), DeviceRoutes()...)
	sort.Strings(documented)
	sort.Strings(served)
	require.Equal(t, served, documented)
}

// TestOpenAPIExamples: every operation shows a partner what to send and what
// comes back: each media type of a request body has an example, and so has
// each media type of each success (2xx) response with a body; binary bodies
// (firmware, clips) excepted. JSON examples must fit their schema (types,
// required properties, enums, no unknown property where the schema forbids
// them), so an example cannot drift from the schema it illustrates.
func TestOpenAPIExamples(t *testing.T) {
	var doc map[string]any
	require.NoError(t, json.Unmarshal(OpenAPI(), &doc))
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	check := func(where string, media map[string]any, jsonMedia bool) {
		schema, _ := media["schema"].(map[string]any)
		if schema["format"] == "binary" {
			return
		}
		examples := []any{}
		if ex, ok := media["example"]; ok {
			examples = append(examples, ex)
		}
		if exs, ok := media["examples"].(map[string]any); ok {
			for _, e := range exs {
				examples = append(examples, e.(map[string]any)["value"])
			}
		}
		if len(examples) == 0 {
			t.Errorf("%s: no example", where)
			return
		}
		for _, ex := range examples {
			if !jsonMedia {
				if _, ok := ex.(string); !ok {
					t.Errorf("%s: the example of a non-JSON body is its text", where)
				}
				continue
			}
			for _, problem := range fitSchema(schemas, schema, ex, "") {
				t.Errorf("%s: example: %s", where, problem)
			}
		}
	}
	ops := 0
	for path, item := range doc["paths"].(map[string]any) {
		for method, o := range item.(map[string]any) {
			op, ok := o.(map[string]any)
			if !ok || method == "parameters" {
				continue
			}
			ops++
			where := strings.ToUpper(method) + " " + path
			if rb, ok := op["requestBody"].(map[string]any); ok {
				for ct, m := range rb["content"].(map[string]any) {
					check(where+" request "+ct, m.(map[string]any), isJSONMedia(ct))
				}
			}
			success := 0
			for code, r := range op["responses"].(map[string]any) {
				if !strings.HasPrefix(code, "2") && code != "101" {
					continue
				}
				success++
				content, _ := r.(map[string]any)["content"].(map[string]any)
				for ct, m := range content {
					check(where+" "+code+" "+ct, m.(map[string]any), isJSONMedia(ct))
				}
			}
			if success == 0 {
				t.Errorf("%s: no success response", where)
			}
		}
	}
	require.Greater(t, ops, 100)
}

func isJSONMedia(ct string) bool { return ct == "application/json" || strings.HasSuffix(ct, "+json") }

// fitSchema lists where v does not fit schema s: the subset of JSON Schema
// the document uses ($ref, type with null, enum, const, required,
// properties, additionalProperties, items, allOf, oneOf, anyOf).
func fitSchema(schemas map[string]any, s map[string]any, v any, at string) []string {
	if at == "" {
		at = "$"
	}
	for ref, ok := s["$ref"].(string); ok; ref, ok = s["$ref"].(string) {
		s = schemas[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any)
	}
	var out []string
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			out = append(out, fitSchema(schemas, sub.(map[string]any), v, at)...)
		}
	}
	for _, k := range []string{"oneOf", "anyOf"} {
		if alts, ok := s[k].([]any); ok {
			fits := false
			for _, sub := range alts {
				if len(fitSchema(schemas, sub.(map[string]any), v, at)) == 0 {
					fits = true
					break
				}
			}
			if !fits {
				out = append(out, at+": fits none of "+k)
			}
		}
	}
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
		}
	}
	types := map[string]bool{}
	switch tt := s["type"].(type) {
	case string:
		types[tt] = true
	case []any:
		for _, x := range tt {
			types[x.(string)] = true
		}
	}
	if len(types) > 0 {
		var got string
		switch n := v.(type) {
		case nil:
			got = "null"
		case bool:
			got = "boolean"
		case string:
			got = "string"
		case float64:
			got = "number"
			if n == float64(int64(n)) && types["integer"] {
				got = "integer"
			}
		case []any:
			got = "array"
		case map[string]any:
			got = "object"
		}
		if !types[got] && !(got == "integer" && types["number"]) {
			return append(out, fmt.Sprintf("%s: %s, want %v", at, got, s["type"]))
		}
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					out = append(out, at+": no "+r.(string))
				}
			}
		}
		for k, val := range x {
			if ps, ok := props[k].(map[string]any); ok {
				out = append(out, fitSchema(schemas, ps, val, at+"."+k)...)
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				out = append(out, fitSchema(schemas, ap, val, at+"."+k)...)
			} else if s["additionalProperties"] == false {
				out = append(out, at+": unknown property "+k)
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range x {
				out = append(out, fitSchema(schemas, items, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return out
}
