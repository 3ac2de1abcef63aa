package protocol

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMayPublish(t *testing.T) {
	for _, tc := range []struct {
		id, topic string
		ok        bool
	}{
		{"L1", "lockers/L1/telemetry", true},
		{"L1", "lockers/L1/state", true},
		{"L1", "lockers/L1/events", true},
		{"L1", "lockers/L1/rpc/res", true},
		{"L1", "lockers/L1/ask/req", true},
		{"L1", "lockers/L1/ota/status", true},
		{"L1", "lockers/L1/rpc/req", false}, // the hub's
		{"L1", "lockers/L1/desired", false},
		{"L1", "lockers/L2/telemetry", false},
		{"L1", "lockers/L1/telemetry/x", false},
		{"L1", "lockers/L1", false},
		{"L1", "lockers//telemetry", false},
		{"L1", "/lockers/L1/telemetry", false},
		{"L1", "lockers/L1/+", false},
		{"", "lockers//telemetry", false},
	} {
		require.Equal(t, tc.ok, MayPublish(tc.id, tc.topic), "%s → %s", tc.id, tc.topic)
	}
}

func TestMaySubscribe(t *testing.T) {
	for _, tc := range []struct {
		id, filter string
		ok         bool
	}{
		{"L1", "lockers/L1/rpc/req", true},
		{"L1", "lockers/L1/#", true},
		{"L1", "lockers/L1/+", true},
		{"L1", "lockers/L1/rpc/+", true},
		{"L1", "lockers/L1", false},
		{"L1", "lockers/L1/", false},
		{"L1", "lockers/+/rpc/req", false},
		{"L1", "lockers/#", false},
		{"L1", "#", false},
		{"L1", "lockers/L2/#", false},
		{"L1", "lockers/L1/#/x", false},
		{"L1", "lockers/L1/a+", false},
		{"L1", "lockers/L1//x", false},
		{"L1", "$share/g/lockers/L1/#", false},
		{"L+", "lockers/L+/#", false},
		{"L#", "lockers/L#/x", false},
	} {
		require.Equal(t, tc.ok, MaySubscribe(tc.id, tc.filter), "%s subscribes %s", tc.id, tc.filter)
	}
}

func TestValidateLockerID(t *testing.T) {
	require.NoError(t, ValidateLockerID("SIM-00001"))
	require.NoError(t, ValidateLockerID("a.b_c-d"))
	for _, bad := range []string{"", "-x", "a/b", "a+b", "a#", "ä", "a b", strings.Repeat("x", 65)} {
		require.Error(t, ValidateLockerID(bad), bad)
	}
}

func TestFilterMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		ok            bool
	}{
		{"lockers/L1/#", "lockers/L1/desired", true},
		{"lockers/L1/+", "lockers/L1/desired", true},
		{"lockers/L1/+", "lockers/L1/rpc/req", false},
		{"lockers/L1/rpc/+", "lockers/L1/rpc/req", true},
		{"lockers/L1/desired", "lockers/L1/desired", true},
		{"lockers/L1/desired", "lockers/L2/desired", false},
		{"#", "lockers/L1/desired", true},
	} {
		require.Equal(t, tc.ok, FilterMatches(tc.filter, tc.topic), "%s ~ %s", tc.filter, tc.topic)
	}
}

// FuzzACL checks the ACL's promise for any client ID, topic and filter: what a
// locker may publish or receive lies inside its own tree.
func FuzzACL(f *testing.F) {
	for _, s := range [][3]string{
		{"L1", "lockers/L1/telemetry", "lockers/L1/#"},
		{"L1", "lockers/L2/telemetry", "lockers/+/rpc/req"},
		{"L1", "lockers/L1/rpc/req", "#"},
		{"a.b", "lockers/a.b/ota/status", "lockers/a.b/ota/+"},
		{"L1", "lockers/L1/../L2/x", "$share/x/lockers/L1/#"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, id, topic, filter string) {
		own := "lockers/" + id + "/"
		if MayPublish(id, topic) {
			if !strings.HasPrefix(topic, own) || ValidateLockerID(id) != nil {
				t.Fatalf("%q may publish %q outside its tree", id, topic)
			}
			gotID, kind, err := ParseTopic(topic)
			if err != nil || gotID != id || !kind.FromDevice() || Topic(id, kind) != topic {
				t.Fatalf("%q may publish %q: parse %q %q %v", id, topic, gotID, kind, err)
			}
		}
		if MaySubscribe(id, filter) {
			if !strings.HasPrefix(filter, own) {
				t.Fatalf("%q may subscribe %q outside its tree", id, filter)
			}
			// Any topic of another locker, or outside lockers/, must not match.
			for _, other := range []string{"lockers/x" + id + "/rpc/req", "lockers/" + id + "x/rpc/req", "lockers/rpc/req", "other/" + id + "/rpc/req"} {
				if FilterMatches(filter, other) {
					t.Fatalf("filter %q of %q matches %q", filter, id, other)
				}
			}
		}
		if id2, kind, err := ParseTopic(topic); err == nil {
			if Topic(id2, kind) != topic {
				t.Fatalf("ParseTopic(%q) does not round-trip", topic)
			}
		}
	})
}
