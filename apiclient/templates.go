package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// TemplateField is a variable a notification template may use.
type TemplateField struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Example     string `json:"example"`
}

// TemplateDraft is a notification template (docs/outbox.md "Templates").
type TemplateDraft struct {
	Event    string `json:"event"`
	Channel  string `json:"channel"`
	Carrier  string `json:"carrier,omitempty"`
	Language string `json:"language,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Body     string `json:"body"`
}

// TemplateEvent is a notification event with its fields and default texts.
type TemplateEvent struct {
	Name        string                   `json:"name"`
	Description string                   `json:"description"`
	Fields      []TemplateField          `json:"fields"`
	Defaults    map[string]TemplateDraft `json:"defaults"`
}

// StoredTemplate is an operator's override.
type StoredTemplate struct {
	TemplateDraft
	UpdatedBy string    `json:"updated_by"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TemplateList is GET /api/v1/templates.
type TemplateList struct {
	Events    []TemplateEvent  `json:"events"`
	Templates []StoredTemplate `json:"templates"`
}

// TemplateInfo is GET /api/v1/templates/{event}/{channel}.
type TemplateInfo struct {
	Template  *StoredTemplate `json:"template"`
	Effective struct {
		TemplateDraft
		Source string `json:"source"`
	} `json:"effective"`
	Default TemplateDraft `json:"default"`
}

// Rendered is a preview.
type Rendered struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text"`
}

// Templates lists the events and the stored overrides.
func (c *Client) Templates(ctx context.Context) (TemplateList, error) {
	var out TemplateList
	err := c.JSON(ctx, http.MethodGet, "/api/v1/templates", nil, &out)
	return out, err
}

func templatePath(event, channel, carrier, language string) string {
	q := url.Values{}
	if carrier != "" {
		q.Set("carrier", carrier)
	}
	if language != "" {
		q.Set("language", language)
	}
	p := "/api/v1/templates/" + url.PathEscape(event) + "/" + url.PathEscape(channel)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// Template returns the override of a key (nil when none), the effective
// template and the default.
func (c *Client) Template(ctx context.Context, event, channel, carrier, language string) (TemplateInfo, error) {
	var out TemplateInfo
	err := c.JSON(ctx, http.MethodGet, templatePath(event, channel, carrier, language), nil, &out)
	return out, err
}

// SetTemplate saves an override (refused with a template_… code when the
// text does not pass).
func (c *Client) SetTemplate(ctx context.Context, d TemplateDraft) (StoredTemplate, error) {
	var out StoredTemplate
	err := c.JSON(ctx, http.MethodPut, templatePath(d.Event, d.Channel, d.Carrier, d.Language),
		map[string]string{"subject": d.Subject, "body": d.Body}, &out)
	return out, err
}

// DeleteTemplate removes an override.
func (c *Client) DeleteTemplate(ctx context.Context, event, channel, carrier, language string) error {
	return c.JSON(ctx, http.MethodDelete, templatePath(event, channel, carrier, language), nil, nil)
}

// PreviewTemplate renders a draft with sample data, or with a parcel's.
func (c *Client) PreviewTemplate(ctx context.Context, d TemplateDraft, parcel string) (Rendered, error) {
	var out Rendered
	in := struct {
		TemplateDraft
		Parcel string `json:"parcel,omitempty"`
	}{d, parcel}
	err := c.JSON(ctx, http.MethodPost, "/api/v1/templates/preview", in, &out)
	return out, err
}

// ParcelNotification is a message sent (or to send) about a parcel.
type ParcelNotification struct {
	ID        string     `json:"id"`
	Channel   string     `json:"channel"`
	Template  string     `json:"template"`
	To        string     `json:"to"`
	Carrier   string     `json:"carrier,omitempty"`
	Language  string     `json:"language,omitempty"`
	State     string     `json:"state"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	Subject   string     `json:"subject,omitempty"`
	Text      string     `json:"text,omitempty"`
}

// ParcelNotifications lists what was sent about a parcel, oldest first.
func (c *Client) ParcelNotifications(ctx context.Context, id string) ([]ParcelNotification, error) {
	var out struct {
		Notifications []ParcelNotification `json:"notifications"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/parcels/"+url.PathEscape(id)+"/notifications", nil, &out)
	return out.Notifications, err
}
