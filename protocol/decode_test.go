package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeState(t *testing.T) {
	s, err := DecodeState([]byte(`{"boot":17,"seq":1042,"ts":1795389000100,"cells":{"A01":{"door":"open","lock":"unlocked","occupied":false}},"power":{"mains":true,"battery_v":12.6},"firmware":"1.4.2","desired_version":7}`))
	require.NoError(t, err)
	require.Equal(t, DoorOpen, s.Cells["A01"].Door)
	require.False(t, *s.Cells["A01"].Occupied)
	require.Equal(t, int64(7), *s.DesiredVersion)

	for _, bad := range []string{
		``, `[]`, `{"boot":1}`, `{"seq":1,"ts":1}`, `{"boot":1,"seq":1,"ts":1,"cells":{"a1":{}}}`,
		`{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"door":"ajar"}}}`,
		`{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"lock":"maybe"}}}`,
		`{"boot":1,"seq":1,"ts":1,"power":{"battery_v":-3}}`,
		`{"boot":1,"seq":1,"ts":1,"cells":{"A01":{"occupied":"yes"}}}`,
		`{"boot":1,"seq":1,"ts":1} {}`,
		`{"boot":1,"seq":1,"ts":1,"firmware":"` + strings.Repeat("x", 65) + `"}`,
		`{"boot":1,"seq":1,"ts":1,"x":"` + strings.Repeat("x", MaxStateBytes) + `"}`,
	} {
		_, err := DecodeState([]byte(bad))
		require.True(t, errors.Is(err, ErrInvalid), "%q: %v", bad, err)
	}
}

func TestDecodeEvent(t *testing.T) {
	e, err := DecodeEvent([]byte(`{"id":"7f3c","boot":17,"seq":1043,"ts":1795389000200,"type":"door_opened","cell":"A01","cause":"command:c-81"}`))
	require.NoError(t, err)
	require.Equal(t, "command:c-81", e.Cause)
	for _, bad := range []string{
		`{"boot":1,"seq":1,"ts":1,"type":"door_opened"}`,
		`{"id":"x","boot":1,"seq":1,"ts":1}`,
		`{"id":"x","boot":1,"seq":1,"ts":1,"type":"door_opened","cell":"door 1"}`,
		`{"id":"x","seq":1,"ts":1,"type":"tamper"}`,
	} {
		_, err := DecodeEvent([]byte(bad))
		require.True(t, errors.Is(err, ErrInvalid), "%q: %v", bad, err)
	}
}

func TestDecodeTelemetry(t *testing.T) {
	s, err := DecodeTelemetry([]byte(`{"boot":17,"seq":0,"ts":1795389000000,"m":{"temp_c":4.5,"humidity_pct":61,"battery_v":12.6,"mains":1,"rssi_dbm":-71,"x1":-1.5e-3}}`))
	require.NoError(t, err)
	require.Equal(t, Header{Boot: 17, Seq: 0, TS: 1795389000000}, s.Header)
	require.Equal(t, map[string]float64{"temp_c": 4.5, "humidity_pct": 61, "battery_v": 12.6, "mains": 1, "rssi_dbm": -71, "x1": -0.0015}, s.M)

	many := make([]string, MaxTelemetryMetrics+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"m%d":1`, i)
	}
	sample := func(m string) string { return `{"boot":1,"seq":1,"ts":1795389000000,"m":{` + m + `}}` }
	for _, tc := range []struct{ name, payload, reason string }{
		{"empty", ``, "not a JSON object"},
		{"array", `[{"boot":1}]`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"not JSON", `{"boot":1,`, "not JSON"},
		{"too big", `{"boot":1,"seq":1,"ts":1,"m":{"a":1` + strings.Repeat(" ", MaxTelemetryBytes) + `}}`, "over the limit"},
		{"trailing data", sample(`"a":1`) + ` {}`, "trailing data"},
		{"unknown field", `{"boot":1,"seq":1,"ts":1795389000000,"m":{"a":1},"pad":"xx"}`, "unknown field"},
		{"boot missing", `{"seq":1,"ts":1795389000000,"m":{"a":1}}`, "boot is missing"},
		{"boot 0", `{"boot":0,"seq":1,"ts":1795389000000,"m":{"a":1}}`, "boot is missing or 0"},
		{"boot negative", `{"boot":-1,"seq":1,"ts":1795389000000,"m":{"a":1}}`, "not JSON of the expected shape"},
		{"seq missing", `{"boot":1,"ts":1795389000000,"m":{"a":1}}`, "seq is missing"},
		{"seq negative", `{"boot":1,"seq":-1,"ts":1795389000000,"m":{"a":1}}`, "not JSON of the expected shape"},
		{"seq fraction", `{"boot":1,"seq":1.5,"ts":1795389000000,"m":{"a":1}}`, "not JSON of the expected shape"},
		{"ts missing", `{"boot":1,"seq":1,"m":{"a":1}}`, "ts is missing"},
		{"ts 0", `{"boot":1,"seq":1,"ts":0,"m":{"a":1}}`, "ts is missing or not positive"},
		{"ts string", `{"boot":1,"seq":1,"ts":"1795389000000","m":{"a":1}}`, "not JSON of the expected shape"},
		{"m missing", `{"boot":1,"seq":1,"ts":1795389000000}`, `"m" is missing`},
		{"m empty", sample(``), `"m" is missing or has no measurements`},
		{"m null", `{"boot":1,"seq":1,"ts":1795389000000,"m":null}`, `"m" is missing`},
		{"m array", `{"boot":1,"seq":1,"ts":1795389000000,"m":[1]}`, "not JSON of the expected shape"},
		{"too many metrics", sample(strings.Join(many, ",")), "more than 64"},
		{"name upper case", sample(`"Temp":1`), `measurement name "Temp"`},
		{"name with digit first", sample(`"1a":1`), "measurement name"},
		{"name with dash", sample(`"temp-c":1`), "measurement name"},
		{"name too long", sample(`"` + strings.Repeat("a", 49) + `":1`), "measurement name"},
		{"name empty", sample(`"":1`), "measurement name"},
		{"NaN string", sample(`"a":"NaN"`), "a string, not a number"},
		{"number as string", sample(`"a":"1.5"`), "a string, not a number"},
		{"boolean", sample(`"a":true`), "a boolean, not a number"},
		{"null value", sample(`"a":null`), "null, not a number"},
		{"nested object", sample(`"a":{"b":1}`), "an object, not a number"},
		{"array value", sample(`"a":[1]`), "an array, not a number"},
		{"overflow", sample(`"a":1e999`), "not a finite number"},
		{"negative overflow", sample(`"a":-1e999`), "not a finite number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTelemetry([]byte(tc.payload))
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, tc.reason)
		})
	}
	// The limit is on the payload: exactly MaxTelemetryBytes is taken.
	pad := MaxTelemetryBytes - len(sample(`"a":1`))
	_, err = DecodeTelemetry([]byte(sample(`"a":1` + strings.Repeat(" ", pad))))
	require.NoError(t, err)
	// Longest name and most measurements are taken.
	_, err = DecodeTelemetry([]byte(sample(strings.Join(many[:MaxTelemetryMetrics], ",") + `,` + `"` + strings.Repeat("a", 48) + `":1`)))
	require.ErrorContains(t, err, "more than 64", "64 plus one is one too many")
	_, err = DecodeTelemetry([]byte(sample(strings.Join(many[:MaxTelemetryMetrics-1], ",") + `,` + `"` + strings.Repeat("a", 48) + `":1`)))
	require.NoError(t, err)
}

// FuzzDecodeDeviceMessages: any payload is decoded or refused with ErrInvalid,
// never a panic, and what is accepted satisfies the checks.
func FuzzDecodeDeviceMessages(f *testing.F) {
	f.Add([]byte(`{"boot":17,"seq":1042,"ts":1795389000100,"cells":{"A01":{"door":"open","lock":"unlocked","occupied":false}},"power":{"mains":true,"battery_v":12.6},"firmware":"1.4.2","desired_version":7}`))
	f.Add([]byte(`{"id":"7f3c","boot":17,"seq":1043,"ts":1795389000200,"type":"door_opened","cell":"A01","cause":"command:c-81"}`))
	f.Add([]byte(`{"boot":1,"seq":1,"ts":1,"power":{"battery_v":1e400}}`))
	f.Add([]byte(`{"boot":17,"seq":1041,"ts":1795389000000,"m":{"temp_c":4.5,"humidity_pct":61,"battery_v":12.6,"mains":1,"rssi_dbm":-71}}`))
	f.Add([]byte(`{"id":"a-9","boot":17,"seq":1044,"ts":1795389000300,"method":"code.check","params":{"code":"48213907"}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if a, err := DecodeAsk(payload); err == nil {
			if a.ID == "" || len(a.ID) > MaxAskIDLen || a.Header == nil || a.Boot == 0 || a.TS <= 0 || !validAskMethod(a.Method) || len(payload) > MaxAskBytes {
				t.Fatalf("accepted an invalid ask: %+v", a)
			}
			if len(a.Params) > 0 && (a.Params[0] != '{' || !json.Valid(a.Params)) {
				t.Fatalf("accepted params %q", a.Params)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("ask error without ErrInvalid: %v", err)
		}
		if s, err := DecodeState(payload); err == nil {
			if s.Boot == 0 || len(s.Cells) > MaxCells {
				t.Fatalf("accepted an invalid state: %+v", s)
			}
			for name := range s.Cells {
				if !ValidCellName(name) {
					t.Fatalf("accepted cell %q", name)
				}
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("state error without ErrInvalid: %v", err)
		}
		if s, err := DecodeTelemetry(payload); err == nil {
			if s.Boot == 0 || s.TS <= 0 || len(s.M) == 0 || len(s.M) > MaxTelemetryMetrics || len(payload) > MaxTelemetryBytes {
				t.Fatalf("accepted an invalid sample: %+v", s)
			}
			for name, v := range s.M {
				if !ValidMetricName(name) || math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("accepted measurement %q = %v", name, v)
				}
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("telemetry error without ErrInvalid: %v", err)
		}
		if e, err := DecodeEvent(payload); err == nil {
			if e.ID == "" || e.Type == "" || e.Boot == 0 {
				t.Fatalf("accepted an invalid event: %+v", e)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("event error without ErrInvalid: %v", err)
		}
	})
}

func TestDecodeAsk(t *testing.T) {
	a, err := DecodeAsk([]byte(`{"id":"a-9","boot":17,"seq":1044,"ts":1795389000300,"method":"code.check","params":{"code":"48213907"},"extra":1}`))
	require.NoError(t, err)
	require.Equal(t, "a-9", a.ID)
	require.Equal(t, Header{Boot: 17, Seq: 1044, TS: 1795389000300}, *a.Header)
	require.Equal(t, AskCodeCheck, a.Method)
	require.JSONEq(t, `{"code":"48213907"}`, string(a.Params))
	a, err = DecodeAsk([]byte(`{"id":"a-1","boot":1,"seq":0,"ts":1,"method":"x","params":null}`))
	require.NoError(t, err)
	require.Nil(t, a.Params)

	for name, bad := range map[string]string{
		"not json":      `nope`,
		"array":         `[1]`,
		"no id":         `{"boot":1,"seq":1,"ts":1,"method":"code.check"}`,
		"empty id":      `{"id":"","boot":1,"seq":1,"ts":1,"method":"code.check"}`,
		"long id":       `{"id":"` + strings.Repeat("a", 65) + `","boot":1,"seq":1,"ts":1,"method":"code.check"}`,
		"id with space": `{"id":"a 1","boot":1,"seq":1,"ts":1,"method":"code.check"}`,
		"numeric id":    `{"id":7,"boot":1,"seq":1,"ts":1,"method":"code.check"}`,
		"no boot":       `{"id":"a","seq":1,"ts":1,"method":"code.check"}`,
		"no seq":        `{"id":"a","boot":1,"ts":1,"method":"code.check"}`,
		"no ts":         `{"id":"a","boot":1,"seq":1,"method":"code.check"}`,
		"no method":     `{"id":"a","boot":1,"seq":1,"ts":1}`,
		"bad method":    `{"id":"a","boot":1,"seq":1,"ts":1,"method":"Code Check"}`,
		"params array":  `{"id":"a","boot":1,"seq":1,"ts":1,"method":"code.check","params":[1]}`,
		"params string": `{"id":"a","boot":1,"seq":1,"ts":1,"method":"code.check","params":"x"}`,
		"trailing data": `{"id":"a","boot":1,"seq":1,"ts":1,"method":"code.check"} {}`,
		"too large":     `{"id":"a","boot":1,"seq":1,"ts":1,"method":"code.check","params":{"x":"` + strings.Repeat("a", MaxAskBytes) + `"}}`,
		"negative boot": `{"id":"a","boot":-1,"seq":1,"ts":1,"method":"code.check"}`,
		"negative ts":   `{"id":"a","boot":1,"seq":1,"ts":-5,"method":"code.check"}`,
		"broken params": `{"id":"a","boot":1,"seq":1,"ts":1,"method":"code.check","params":{"x":}}`,
	} {
		_, err := DecodeAsk([]byte(bad))
		require.ErrorIs(t, err, ErrInvalid, name)
	}
}
