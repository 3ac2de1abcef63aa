package connectors

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// XMLOrders is an XML order feed (docs/integration.md, "XML order feed"):
//
//	<order id="SHOP-1001">
//	  <locker>L-00001</locker>
//	  <size>M</size>
//	  <recipient><name>Erika Mustermann</name><phone>+4915112345678</phone><email>erika@example.com</email></recipient>
//	  <storage-hours>72</storage-hours>
//	</order>
//
//	<cancel order="SHOP-1001"><reason>customer withdrew</reason></cancel>
//
// answered with <status order="…" parcel="…" state="…" locker="…" cell="…"
// updated="RFC 3339" expires="RFC 3339"/> or <error code="…">message</error>.
// A document has one root element and nothing after it; a DOCTYPE (and so
// any entity declaration) is refused, unknown elements are refused rather
// than ignored (a partner's typo must not drop a field silently).
type XMLOrders struct{}

func (XMLOrders) Name() string        { return "xml-orders" }
func (XMLOrders) ContentType() string { return "application/xml; charset=utf-8" }

// Field bounds of the feed.
const (
	maxOrderID = 100
	maxField   = 200
)

type xmlOrder struct {
	XMLName      xml.Name   `xml:"order"`
	ID           string     `xml:"id,attr"`
	Locker       string     `xml:"locker"`
	Size         string     `xml:"size"`
	Recipient    xmlRecip   `xml:"recipient"`
	StorageHours string     `xml:"storage-hours"`
	Unknown      []xml.Name `xml:",any"`
}

type xmlRecip struct {
	Name    string     `xml:"name"`
	Phone   string     `xml:"phone"`
	Email   string     `xml:"email"`
	Unknown []xml.Name `xml:",any"`
}

type xmlCancel struct {
	XMLName xml.Name   `xml:"cancel"`
	Order   string     `xml:"order,attr"`
	Reason  string     `xml:"reason"`
	Unknown []xml.Name `xml:",any"`
}

func (XMLOrders) DecodeOrder(doc []byte) (Order, error) {
	var o xmlOrder
	if err := decodeXML(doc, "order", &o); err != nil {
		return Order{}, err
	}
	if len(o.Unknown) > 0 || len(o.Recipient.Unknown) > 0 {
		return Order{}, fmt.Errorf("%w: unknown element <%s>", ErrInvalid, firstUnknown(o.Unknown, o.Recipient.Unknown))
	}
	out := Order{OrderID: strings.TrimSpace(o.ID), LockerID: strings.TrimSpace(o.Locker), Size: strings.TrimSpace(o.Size),
		Name: strings.TrimSpace(o.Recipient.Name), Phone: strings.TrimSpace(o.Recipient.Phone), Email: strings.TrimSpace(o.Recipient.Email)}
	if err := validOrderID(out.OrderID); err != nil {
		return Order{}, err
	}
	for name, v := range map[string]string{"locker": out.LockerID, "size": out.Size, "name": out.Name, "phone": out.Phone, "email": out.Email} {
		if len(v) > maxField {
			return Order{}, fmt.Errorf("%w: <%s> is longer than %d bytes", ErrInvalid, name, maxField)
		}
	}
	switch {
	case out.LockerID == "":
		return Order{}, fmt.Errorf("%w: <locker> is required", ErrInvalid)
	case out.Size == "":
		return Order{}, fmt.Errorf("%w: <size> is required", ErrInvalid)
	case out.Phone == "" && out.Email == "":
		return Order{}, fmt.Errorf("%w: <recipient> needs <phone> or <email>", ErrInvalid)
	}
	if h := strings.TrimSpace(o.StorageHours); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n <= 0 {
			return Order{}, fmt.Errorf("%w: <storage-hours> must be a positive whole number, got %q", ErrInvalid, h)
		}
		out.StorageHours = n
	}
	return out, nil
}

func (XMLOrders) DecodeCancel(doc []byte) (Cancel, error) {
	var c xmlCancel
	if err := decodeXML(doc, "cancel", &c); err != nil {
		return Cancel{}, err
	}
	if len(c.Unknown) > 0 {
		return Cancel{}, fmt.Errorf("%w: unknown element <%s>", ErrInvalid, c.Unknown[0].Local)
	}
	out := Cancel{OrderID: strings.TrimSpace(c.Order), Reason: strings.TrimSpace(c.Reason)}
	if err := validOrderID(out.OrderID); err != nil {
		return Cancel{}, err
	}
	if len(out.Reason) > 500 {
		return Cancel{}, fmt.Errorf("%w: <reason> is longer than 500 bytes", ErrInvalid)
	}
	return out, nil
}

type xmlStatus struct {
	XMLName xml.Name `xml:"status"`
	ID      string   `xml:"id,attr,omitempty"`    // callbacks: the stable event id
	Event   string   `xml:"event,attr,omitempty"` // callbacks: parcel.deposited …
	At      string   `xml:"at,attr,omitempty"`    // callbacks: when it happened
	Order   string   `xml:"order,attr"`
	Parcel  string   `xml:"parcel,attr"`
	State   string   `xml:"state,attr"`
	Locker  string   `xml:"locker,attr"`
	Cell    string   `xml:"cell,attr,omitempty"`
	Updated string   `xml:"updated,attr"`
	Expires string   `xml:"expires,attr,omitempty"`
}

func (XMLOrders) EncodeStatus(s Status) ([]byte, error) {
	return encodeStatus(statusDoc(s))
}

// EncodeCallback is the status document with the event's id, type and time:
//
//	<status id="p-…:deposited" event="parcel.deposited" at="…" order="SHOP-1001" parcel="p-…" state="deposited" …/>
func (XMLOrders) EncodeCallback(c Callback) ([]byte, error) {
	x := statusDoc(c.Status)
	x.ID, x.Event, x.At = c.ID, c.Event, c.At.UTC().Format(time.RFC3339Nano)
	return encodeStatus(x)
}

func statusDoc(s Status) xmlStatus {
	x := xmlStatus{Order: s.OrderID, Parcel: s.ParcelID, State: s.State, Locker: s.LockerID, Cell: s.Cell,
		Updated: s.UpdatedAt.UTC().Format(time.RFC3339Nano)}
	if s.ExpiresAt != nil {
		x.Expires = s.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	return x
}

func encodeStatus(x xmlStatus) ([]byte, error) {
	b, err := xml.Marshal(x)
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

type xmlError struct {
	XMLName xml.Name `xml:"error"`
	Code    string   `xml:"code,attr"`
	Message string   `xml:",chardata"`
}

func (XMLOrders) EncodeError(code, message string) []byte {
	b, err := xml.Marshal(xmlError{Code: code, Message: message})
	if err != nil { // not for strings: xml.Marshal escapes them
		return []byte(xml.Header + `<error code="internal"/>` + "\n")
	}
	return append([]byte(xml.Header), append(b, '\n')...)
}

// decodeXML reads one root element named root into v: UTF-8 only, no
// DOCTYPE or other directive, nothing but white space and comments around it.
func decodeXML(doc []byte, root string, v any) error {
	if len(doc) > MaxDocument {
		return fmt.Errorf("%w: the document is larger than %d bytes", ErrInvalid, MaxDocument)
	}
	if !utf8.Valid(doc) {
		return fmt.Errorf("%w: the document is not UTF-8", ErrInvalid)
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	d.CharsetReader = func(charset string, _ io.Reader) (io.Reader, error) {
		return nil, fmt.Errorf("encoding %q: only UTF-8 is taken", charset)
	}
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: no <%s> element", ErrInvalid, root)
			}
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		switch t := tok.(type) {
		case xml.ProcInst, xml.Comment, xml.CharData:
			if cd, ok := t.(xml.CharData); ok && len(bytes.TrimSpace(cd)) > 0 {
				return fmt.Errorf("%w: text outside <%s>", ErrInvalid, root)
			}
			continue
		case xml.Directive:
			return fmt.Errorf("%w: a DOCTYPE or other directive is not allowed", ErrInvalid)
		case xml.StartElement:
			if t.Name.Local != root || t.Name.Space != "" {
				return fmt.Errorf("%w: the root element must be <%s>, got <%s>", ErrInvalid, root, t.Name.Local)
			}
			if err := d.DecodeElement(v, &t); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalid, err)
			}
			return rest(d, root)
		default:
			return fmt.Errorf("%w: unexpected %T before <%s>", ErrInvalid, tok, root)
		}
	}
}

// rest checks nothing but white space and comments follows the root.
func rest(d *xml.Decoder, root string) error {
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: after </%s>: %v", ErrInvalid, root, err)
		}
		switch t := tok.(type) {
		case xml.Comment:
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("%w: text after </%s>", ErrInvalid, root)
			}
		default:
			return fmt.Errorf("%w: only one <%s> per document", ErrInvalid, root)
		}
	}
}

func validOrderID(id string) error {
	if id == "" || len(id) > maxOrderID {
		return fmt.Errorf("%w: the order id must be 1 to %d characters", ErrInvalid, maxOrderID)
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f {
			return fmt.Errorf("%w: the order id %q has a space or control character", ErrInvalid, id)
		}
	}
	return nil
}

func firstUnknown(lists ...[]xml.Name) string {
	for _, l := range lists {
		if len(l) > 0 {
			return l[0].Local
		}
	}
	return ""
}
