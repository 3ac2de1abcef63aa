package connectors_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/connectors"
)

const order = `<?xml version="1.0" encoding="UTF-8"?>
<!-- from the shop -->
<order id="SHOP-1001">
  <locker>L-00001</locker>
  <size>M</size>
  <recipient><name>Erika Mustermann</name><phone>+4915112345678</phone><email>erika@example.com</email></recipient>
  <storage-hours>48</storage-hours>
</order>
`

func TestXMLOrderDecodes(t *testing.T) {
	o, err := connectors.XMLOrders{}.DecodeOrder([]byte(order))
	require.NoError(t, err)
	require.Equal(t, connectors.Order{OrderID: "SHOP-1001", LockerID: "L-00001", Size: "M", Name: "Erika Mustermann",
		Phone: "+4915112345678", Email: "erika@example.com", StorageHours: 48}, o)

	c, err := connectors.XMLOrders{}.DecodeCancel([]byte(`<cancel order="SHOP-1001"><reason>customer withdrew</reason></cancel>`))
	require.NoError(t, err)
	require.Equal(t, connectors.Cancel{OrderID: "SHOP-1001", Reason: "customer withdrew"}, c)
}

// TestXMLOrderRefusals: what a partner's system can get wrong, or an
// attacker try, is refused with a reason, never half taken.
func TestXMLOrderRefusals(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"entity expansion":     {`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><order id="x"><locker>&lol2;</locker></order>`, "DOCTYPE"},
		"external entity":      {`<!DOCTYPE order [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><order id="x"><locker>&xxe;</locker></order>`, "DOCTYPE"},
		"undeclared entity":    {`<order id="x"><locker>&xxe;</locker><size>M</size><recipient><phone>1</phone></recipient></order>`, "entity"},
		"unknown element":      {`<order id="x"><locker>L</locker><size>M</size><recipient><phone>1</phone></recipient><colour>red</colour></order>`, "unknown element <colour>"},
		"unknown in recipient": {`<order id="x"><locker>L</locker><size>M</size><recipient><phone>1</phone><fax>2</fax></recipient></order>`, "unknown element <fax>"},
		"wrong root":           {`<delivery id="x"/>`, "root element must be <order>"},
		"two orders":           {`<order id="a"><locker>L</locker><size>M</size><recipient><phone>1</phone></recipient></order><order id="b"/>`, "only one <order>"},
		"text after":           {`<order id="a"><locker>L</locker><size>M</size><recipient><phone>1</phone></recipient></order>junk`, "text after"},
		"no id":                {`<order><locker>L</locker><size>M</size><recipient><phone>1</phone></recipient></order>`, "order id"},
		"no locker":            {`<order id="a"><size>M</size><recipient><phone>1</phone></recipient></order>`, "<locker> is required"},
		"no contact":           {`<order id="a"><locker>L</locker><size>M</size><recipient><name>E</name></recipient></order>`, "<phone> or <email>"},
		"bad hours":            {`<order id="a"><locker>L</locker><size>M</size><recipient><phone>1</phone></recipient><storage-hours>-3</storage-hours></order>`, "storage-hours"},
		"latin-1":              {`<?xml version="1.0" encoding="ISO-8859-1"?><order id="a"/>`, "only UTF-8"},
		"not utf-8":            {"<order id=\"a\xff\"/>", "not UTF-8"},
		"unclosed":             {`<order id="a"><locker>L</locker>`, "invalid"},
		"empty":                {``, "no <order>"},
		"too large":            {`<order id="a"><locker>` + strings.Repeat("L", connectors.MaxDocument) + `</locker></order>`, "larger than"},
		"long field":           {`<order id="a"><locker>` + strings.Repeat("L", 201) + `</locker><size>M</size><recipient><phone>1</phone></recipient></order>`, "longer than 200"},
		"space in id":          {`<order id="a b"><locker>L</locker><size>M</size><recipient><phone>1</phone></recipient></order>`, "space or control"},
	} {
		_, err := connectors.XMLOrders{}.DecodeOrder([]byte(tc.doc))
		require.ErrorIs(t, err, connectors.ErrInvalid, name)
		require.ErrorContains(t, err, tc.want, name)
	}
}

func TestXMLStatusAndErrorEncode(t *testing.T) {
	exp := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	b, err := connectors.XMLOrders{}.EncodeStatus(connectors.Status{OrderID: "SHOP-1001", ParcelID: "p_1", State: "deposited",
		LockerID: "L-00001", Cell: "A03", ExpiresAt: &exp, UpdatedAt: exp.Add(-72 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<status order="SHOP-1001" parcel="p_1" state="deposited" locker="L-00001" cell="A03" updated="2026-12-03T10:00:00Z" expires="2026-12-06T10:00:00Z"></status>`+"\n", string(b))
	require.Equal(t, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<error code="not_found">no order &lt;x&gt;</error>`+"\n",
		string(connectors.XMLOrders{}.EncodeError("not_found", "no order <x>")))
}

// FuzzXMLOrder: whatever a partner sends, the decoder answers an order that
// holds its bounds or ErrInvalid; it never panics. The corpus is in
// testdata/fuzz/FuzzXMLOrder.
func FuzzXMLOrder(f *testing.F) {
	f.Add([]byte(order))
	f.Add([]byte(`<cancel order="SHOP-1001"><reason>x</reason></cancel>`))
	f.Add([]byte(`<!DOCTYPE a [<!ENTITY b "c">]><order id="x"/>`))
	f.Add([]byte(`<order id="x"><locker>L</locker><size>M</size><recipient><phone>1</phone></recipient></order>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c := connectors.XMLOrders{}
		o, err := c.DecodeOrder(doc)
		if err != nil {
			require.ErrorIs(t, err, connectors.ErrInvalid)
		} else {
			require.NotEmpty(t, o.OrderID)
			require.LessOrEqual(t, len(o.OrderID), 100)
			require.NotEmpty(t, o.LockerID)
			require.True(t, o.Phone != "" || o.Email != "")
			require.GreaterOrEqual(t, o.StorageHours, 0)
		}
		if x, err := c.DecodeCancel(doc); err != nil {
			require.ErrorIs(t, err, connectors.ErrInvalid)
		} else {
			require.NotEmpty(t, x.OrderID)
		}
	})
}

// TestXMLStatusCallback: the outbound status document carries the event's
// id, type and time beside the status, escaped as XML.
func TestXMLStatusCallback(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	doc, err := connectors.XMLOrders{}.EncodeCallback(connectors.Callback{ID: "p-1:deposited", Event: "parcel.deposited", At: at,
		Status: connectors.Status{OrderID: `A&B"<1>`, ParcelID: "p-1", State: "deposited", LockerID: "L1", Cell: "A01", UpdatedAt: at}})
	require.NoError(t, err)
	require.Equal(t, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<status id="p-1:deposited" event="parcel.deposited" at="2026-12-03T10:00:00Z" order="A&amp;B&#34;&lt;1&gt;" parcel="p-1" state="deposited" locker="L1" cell="A01" updated="2026-12-03T10:00:00Z"></status>`+"\n", string(doc))
	plain, err := connectors.XMLOrders{}.EncodeStatus(connectors.Status{OrderID: "A", ParcelID: "p-1", State: "reserved", LockerID: "L1", UpdatedAt: at})
	require.NoError(t, err)
	require.NotContains(t, string(plain), "event=", "a status read back has no event")
}
