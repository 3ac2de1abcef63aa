package fleet

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClusterPayloadsFitNotify: a batch naming thousands of lockers and
// commands is split into notifications PostgreSQL takes (NOTIFY payloads
// are limited to 8,000 bytes), and together they name every one.
func TestClusterPayloadsFitNotify(t *testing.T) {
	var m clusterMsg
	m.Node = "node-with-a-long-name-" + fmt.Sprint(slices.Repeat([]byte{'x'}, 40))
	for i := range 3000 {
		m.Twins = append(m.Twins, fmt.Sprintf("LOCKER-WITH-A-LONG-ID-%06d", i))
		m.Done = append(m.Done, fmt.Sprintf("c-%020d", i))
	}
	m.On, m.Off = []string{"L1"}, []string{"L2"}
	ps := m.payloads()
	require.Greater(t, len(ps), 10)
	var back clusterMsg
	for _, p := range ps {
		require.LessOrEqual(t, len(p), 8000, "NOTIFY refuses longer payloads")
		var one clusterMsg
		require.NoError(t, json.Unmarshal([]byte(p), &one))
		require.Equal(t, m.Node, one.Node)
		back.merge(one)
	}
	require.Equal(t, m.Twins, back.Twins)
	require.Equal(t, m.Done, back.Done)
	require.Equal(t, m.On, back.On)
	require.Equal(t, m.Off, back.Off)
	require.Empty(t, clusterMsg{Node: "a"}.payloads(), "nothing to say: no notification")
}
