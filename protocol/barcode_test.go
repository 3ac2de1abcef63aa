package protocol_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/protocol"
)

func TestDecodeBarcodeCheck(t *testing.T) {
	p, err := protocol.DecodeBarcodeCheck(json.RawMessage(`{"barcode":"JJD0001"}`))
	require.NoError(t, err)
	require.Equal(t, protocol.BarcodeCheckParams{Barcode: "JJD0001", Purpose: protocol.ScanDropoff}, p)
	p, err = protocol.DecodeBarcodeCheck(json.RawMessage(`{"barcode":"JJD0001","purpose":"pickup","cell":"B03"}`))
	require.NoError(t, err)
	require.Equal(t, "B03", p.Cell)
	for _, bad := range []string{
		``, `null`, `[]`, `"x"`, `{"barcode":""}`, `{"barcode":"with space"}`, `{"barcode":"` + strings.Repeat("9", 65) + `"}`,
		`{"barcode":"ü"}`, `{"barcode":"A","purpose":"steal"}`, `{"barcode":"A","purpose":"pickup"}`, `{"barcode":"A","cell":"a01"}`,
		`{"barcode":"A","cell":"A01; DROP"}`, `{"barcode":1}`, `{"barcode":"A"` + strings.Repeat(" ", 1100) + `}`,
	} {
		_, err := protocol.DecodeBarcodeCheck(json.RawMessage(bad))
		require.ErrorIs(t, err, protocol.ErrInvalid, bad)
	}
}

// FuzzDecodeBarcodeCheck: scanner input from a locker never crashes the
// decoder, and what it accepts is within the documented bounds.
func FuzzDecodeBarcodeCheck(f *testing.F) {
	for _, s := range []string{`{"barcode":"JJD0001"}`, `{"barcode":"X","purpose":"collect","cell":"AA10"}`, `{"barcode":"\u0000"}`, `{}`, `{"barcode":"A","cell":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := protocol.DecodeBarcodeCheck(in)
		if err != nil {
			if !errors.Is(err, protocol.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if len(p.Barcode) == 0 || len(p.Barcode) > protocol.MaxBarcodeBytes || !utf8.ValidString(p.Barcode) {
			t.Fatalf("accepted barcode %q", p.Barcode)
		}
		switch p.Purpose {
		case protocol.ScanDropoff:
		case protocol.ScanPickup, protocol.ScanCollect:
			if p.Cell == "" {
				t.Fatalf("accepted %s without a cell", p.Purpose)
			}
		default:
			t.Fatalf("accepted purpose %q", p.Purpose)
		}
	})
}
