package lockersim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistIndexMonotonicAndPrecise(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<24; us += 1 + us/97 {
		i := histIndex(us)
		require.GreaterOrEqual(t, i, prev)
		prev = i
		low := histLow(i)
		require.LessOrEqual(t, low, us)
		if us >= histSub {
			require.Less(t, float64(us-low)/float64(us), 0.032, "us=%d low=%d", us, low)
		} else {
			require.Equal(t, us, low)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h latencyHist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	require.InDelta(t, 500, h.quantileMs(0.5), 500*0.032)
	require.InDelta(t, 990, h.quantileMs(0.99), 990*0.032)
	require.Equal(t, 1000.0, h.quantileMs(1))
}
