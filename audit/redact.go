package audit

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
)

// Redacted replaces the value of a sensitive field.
const Redacted = "[redacted]"

// sensitiveExact are field names (lower case) whose values are secrets.
var sensitiveExact = map[string]bool{
	"token": true, "token_hash": true, "session_id": true, "id_hash": true, "hash": true,
	"api_key": true, "pin": true, "otp": true, "pickup_code": true, "access_code": true,
	"codes_key": true, "private_key": true, "key_pem": true,
	"key": true, // codes.key params carry the pickup-code secret as "key"
}

// sensitiveParts make any field whose name contains them sensitive.
var sensitiveParts = []string{"password", "passwd", "secret", "hmac", "csrf", "private", "credential", "bearer"}

// digits is what a pickup code looks like under the plain name "code" (an
// error code such as "jammed" stays readable).
var digits = regexp.MustCompile(`^[0-9]{4,12}$`)

// Sensitive reports whether a field of this name holds a secret whatever
// its value: passwords and their hashes, tokens, session ids, CSRF tokens,
// HMAC and other secrets, private keys, pickup codes. Fields ending in
// "_token" are secrets too ("enroll_token"), "token_id"/"token_name" not.
func Sensitive(field string) bool {
	f := strings.ToLower(field)
	if sensitiveExact[f] || strings.HasSuffix(f, "_token") || strings.HasSuffix(f, "_secret") {
		return true
	}
	for _, p := range sensitiveParts {
		if strings.Contains(f, p) {
			return true
		}
	}
	return false
}

// Redact returns the JSON document with the value of every sensitive field
// (at any depth) replaced by "[redacted]", and any field named "code" whose
// value is 4 to 12 digits (a pickup code).
func Redact(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(redactValue(v))
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch {
			case e == nil:
			case Sensitive(k):
				x[k] = Redacted
			case strings.EqualFold(k, "code") && isDigits(e):
				x[k] = Redacted
			default:
				x[k] = redactValue(e)
			}
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = redactValue(e)
		}
		return x
	}
	return v
}

func isDigits(v any) bool {
	switch x := v.(type) {
	case string:
		return digits.MatchString(x)
	case json.Number:
		return digits.MatchString(x.String())
	}
	return false
}
