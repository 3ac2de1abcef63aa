package alarms

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMatchers(t *testing.T) {
	a := &Alarm{Kind: KindDoorForced, Severity: SeverityCritical, LockerID: "L1", Cell: "A01", Segments: []string{"north", "pilot"}}
	for _, tc := range []struct {
		m    Matcher
		want bool
	}{
		{Matcher{Name: "kind", Op: "=", Value: "door_forced"}, true},
		{Matcher{Name: "kind", Op: "!=", Value: "door_forced"}, false},
		{Matcher{Name: "kind", Op: "=~", Value: "door_.*"}, true},
		{Matcher{Name: "kind", Op: "=~", Value: "door"}, false}, // anchored
		{Matcher{Name: "segment", Op: "=", Value: "pilot"}, true},
		{Matcher{Name: "segment", Op: "!=", Value: "pilot"}, false},
		{Matcher{Name: "segment", Op: "!~", Value: "s.*"}, true},
		{Matcher{Name: "carrier", Op: "=", Value: "dhl"}, false},
		{Matcher{Name: "carrier", Op: "!=", Value: "dhl"}, true},
		{Matcher{Name: "cell", Op: "=", Value: "A01"}, true},
	} {
		require.NoError(t, tc.m.compile())
		require.Equal(t, tc.want, tc.m.matches(a), "%+v", tc.m)
	}
	for _, bad := range []Matcher{{Name: "colour", Op: "=", Value: "x"}, {Name: "kind", Op: "~", Value: "x"}, {Name: "kind", Op: "=~", Value: "("}} {
		require.ErrorIs(t, bad.compile(), ErrInvalid, "%+v", bad)
	}
}

func TestRoutingTreeInheritsAndContinues(t *testing.T) {
	var rt Routing
	require.NoError(t, json.Unmarshal([]byte(`{
		"receivers": [{"name":"ops","type":"chat","url":"http://chat/"},{"name":"sec","type":"sms","to":"+4917012345678"}],
		"schedules": [{"name":"oncall","levels":[{"after":"0s","rotation":["ops","sec"],"shift":"24h"},{"after":"10m","rotation":["sec"]}]}],
		"route": {"receivers":["ops"],"group_by":["locker"],"group_wait":"10s","routes":[
			{"matchers":[{"name":"kind","op":"=","value":"door_forced"}],"receivers":["sec"],"group_wait":"0s","continue":true},
			{"matchers":[{"name":"severity","op":"=","value":"critical"}],"schedule":"oncall"},
			{"matchers":[{"name":"segment","op":"=","value":"north"}],"group_by":["segment"]}
		]}}`), &rt))
	require.NoError(t, rt.validate())
	forced := &Alarm{Kind: KindDoorForced, Severity: SeverityCritical, LockerID: "L1", Segments: []string{"north"}}
	got := rt.routes(forced)
	require.Len(t, got, 2, "continue: the first child and the next that matches")
	require.Equal(t, "0.0", got[0].Path)
	require.Equal(t, []string{"sec"}, got[0].Receivers)
	require.Zero(t, got[0].GroupWait)
	require.Equal(t, "0.1", got[1].Path)
	require.Equal(t, []string{"ops"}, got[1].Receivers, "inherited")
	require.Equal(t, 10*time.Second, got[1].GroupWait, "inherited")
	require.NotNil(t, got[1].Schedule)
	require.Equal(t, got[1], rt.route("0.1"))

	offline := &Alarm{Kind: KindOffline, Severity: SeverityMajor, LockerID: "L2", Segments: []string{"south"}}
	got = rt.routes(offline)
	require.Len(t, got, 1)
	require.Equal(t, "0", got[0].Path, "no child matches: the root")

	// The rotation hands over every shift; level 2 adds its own.
	day := rotationEpoch.Add(36 * time.Hour)
	r := rt.route("0.1")
	names := func(rs []Receiver) []string {
		var out []string
		for _, x := range rs {
			out = append(out, x.Name)
		}
		return out
	}
	require.Equal(t, []string{"ops"}, names(targets(r, rt, 0, rotationEpoch.Add(time.Hour))))
	require.Equal(t, []string{"ops", "sec"}, names(targets(r, rt, 0, day)))
	require.Equal(t, []string{"ops", "sec"}, names(targets(r, rt, 1, rotationEpoch.Add(time.Hour))))
}

func TestRoutingValidation(t *testing.T) {
	for name, doc := range map[string]string{
		"root matchers":     `{"route":{"matchers":[{"name":"kind","op":"=","value":"x"}]}}`,
		"unknown receiver":  `{"route":{"receivers":["nobody"]}}`,
		"unknown schedule":  `{"route":{"schedule":"nobody"}}`,
		"bad email":         `{"receivers":[{"name":"m","type":"email","to":"not an address"}],"route":{}}`,
		"bad phone":         `{"receivers":[{"name":"m","type":"sms","to":"0170"}],"route":{}}`,
		"twice":             `{"receivers":[{"name":"c","type":"chat","url":"http://x/"},{"name":"c","type":"chat","url":"http://y/"}],"route":{}}`,
		"level order":       `{"receivers":[{"name":"c","type":"chat","url":"http://x/"}],"schedules":[{"name":"s","levels":[{"after":"0s","rotation":["c"]},{"after":"0s","rotation":["c"]}]}],"route":{}}`,
		"first level later": `{"receivers":[{"name":"c","type":"chat","url":"http://x/"}],"schedules":[{"name":"s","levels":[{"after":"5m","rotation":["c"]}]}],"route":{}}`,
		"empty rotation":    `{"schedules":[{"name":"s","levels":[{"after":"0s","rotation":[]}]}],"route":{}}`,
		"repeat too short":  `{"route":{"repeat_interval":"1ms"}}`,
		"bad type":          `{"receivers":[{"name":"p","type":"pager","url":"http://x/"}],"route":{}}`,
	} {
		var rt Routing
		require.NoError(t, json.Unmarshal([]byte(doc), &rt), name)
		require.ErrorIs(t, rt.validate(), ErrInvalid, name)
	}
	d := DefaultRouting()
	require.NoError(t, d.validate())
	got := d.routes(&Alarm{Kind: KindOffline, Segments: []string{"east"}})
	require.Len(t, got, 1)
	require.Equal(t, 30*time.Second, got[0].GroupWait, "decision 22: fleet-wide kinds wait 30 s")
	require.Equal(t, []string{"segment", "kind"}, got[0].GroupBy)
	got = d.routes(&Alarm{Kind: KindTamper})
	require.Zero(t, got[0].GroupWait, "decision 22: security kinds at once")
}

func TestRulePrecedence(t *testing.T) {
	th := func(v float64) *float64 { return &v }
	dd := func(v time.Duration) *Duration { x := Duration(v); return &x }
	rules := []Rule{
		{Kind: KindFreeCellsLow, Enabled: true, Threshold: th(5)},
		{Kind: KindFreeCellsLow, Model: "kx", Enabled: true, Threshold: th(4)},
		{Kind: KindFreeCellsLow, Segment: "north", Enabled: true, Threshold: th(3)},
		{Kind: KindFreeCellsLow, LockerID: "L9", Enabled: false},
		{Kind: KindOffline, Enabled: true, For: dd(0)},
	}
	for _, r := range rules {
		require.NoError(t, r.Validate())
	}
	require.Equal(t, 5.0, ruleFor(rules, KindFreeCellsLow, Locker{ID: "L1"}).Threshold)
	require.Equal(t, 4.0, ruleFor(rules, KindFreeCellsLow, Locker{ID: "L1", Model: "kx"}).Threshold)
	require.Equal(t, 3.0, ruleFor(rules, KindFreeCellsLow, Locker{ID: "L1", Model: "kx", Segments: []string{"north"}}).Threshold)
	require.False(t, ruleFor(rules, KindFreeCellsLow, Locker{ID: "L9", Segments: []string{"north"}}).Enabled)
	require.Zero(t, ruleFor(rules, KindOffline, Locker{ID: "L1"}).For, "an explicit 0 overrides the default")
	require.Equal(t, 5*time.Minute, ruleFor(nil, KindOffline, Locker{ID: "L1"}).For)
	require.Equal(t, 11.5, ruleFor(nil, KindBatteryLow, Locker{}).Threshold)
	require.ErrorIs(t, Rule{Kind: KindFreeCellsLow, Segment: "a", Model: "b"}.Validate(), ErrInvalid)
	require.ErrorIs(t, Rule{Kind: KindTamper, Threshold: th(1)}.Validate(), ErrInvalid)
	require.ErrorIs(t, Rule{Kind: KindTamper, Severity: "urgent"}.Validate(), ErrInvalid)
}
