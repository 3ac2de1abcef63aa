package web

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/lockerhub/lockerhub/access"
)

// The role matrix: who may call each non-public route. It is the only place
// that decides; authenticate asks it on every request, docs/access.md is
// generated from it (TestAccessDocMatchesMatrix) and TestRoleMatrix walks it
// against a real hub for every route and every role.
//
// A route that is not in the matrix is refused to everybody, and
// TestEveryRouteHasARoleRow fails naming the row to add.
//
// Carriers: a user or API client with a carrier sees only the lockers
// that carrier may use (whole lockers, its segments' lockers and lockers
// where it has a quota: fleet.Locker.CarrierAccess). Routes under
// /api/v1/lockers/{id} answer 404 for any other locker (as for one that does
// not exist), lists and the live stream leave them out.

// allow says who may call a route: users of the roles listed, and API
// clients that hold scope (noClients: none; anyClient: every client).
type allow struct {
	roles []string
	scope string
}

const (
	noClients = ""
	anyClient = "*"
)

const (
	admin      = access.RoleAdmin
	technician = access.RoleTechnician
	courier    = access.RoleCourier
	oncall     = access.RoleOnCall
	viewer     = access.RoleViewer
)

// Groups of roles used by the matrix.
var (
	everyone  = []string{admin, technician, courier, oncall, viewer}
	adminOnly = []string{admin}
	fleetOps  = []string{admin, technician}
	// alarmReaders see alarms (couriers do not: alarms are not carrier
	// data); alarmActors acknowledge, resolve, mute and silence them.
	alarmReaders = []string{admin, technician, oncall, viewer}
	alarmActors  = []string{admin, technician, oncall}
	// otaReaders follow firmware rollouts; otaStoppers may also pause one
	// (on-call staff stop a bad update; only technicians and admins start,
	// widen or roll one back).
	otaReaders  = []string{admin, technician, oncall, viewer}
	otaStoppers = []string{admin, technician, oncall}
	// videoViewers watch the lockers' cameras and their clips: the people
	// who act on alarms. Viewers and couriers do not (privacy), nor API clients.
	videoViewers = []string{admin, technician, oncall}
)

// roleMatrix maps "METHOD /path" (as in the route tables) to who may call it.
var roleMatrix = map[string]allow{
	// The caller's own session: everybody.
	"GET /api/v1/session":    {everyone, anyClient},
	"DELETE /api/v1/session": {everyone, anyClient},

	// Carriers and their share of the network: everybody reads (a caller
	// limited to a carrier its own); only admins divide the network.
	"GET /api/v1/carriers":                                 {everyone, access.ScopeLockersRead},
	"POST /api/v1/carriers":                                {adminOnly, noClients},
	"GET /api/v1/carriers/usage":                           {everyone, access.ScopeLockersRead},
	"GET /api/v1/carriers/{carrier}":                       {everyone, access.ScopeLockersRead},
	"PATCH /api/v1/carriers/{carrier}":                     {adminOnly, noClients},
	"DELETE /api/v1/carriers/{carrier}":                    {adminOnly, noClients},
	"PUT /api/v1/carriers/{carrier}/lockers/{locker}":      {adminOnly, noClients},
	"DELETE /api/v1/carriers/{carrier}/lockers/{locker}":   {adminOnly, noClients},
	"PUT /api/v1/carriers/{carrier}/segments/{segment}":    {adminOnly, noClients},
	"DELETE /api/v1/carriers/{carrier}/segments/{segment}": {adminOnly, noClients},
	"PUT /api/v1/carriers/{carrier}/quotas/{locker}":       {adminOnly, noClients},
	"DELETE /api/v1/carriers/{carrier}/quotas/{locker}":    {adminOnly, noClients},

	// Lockers: everybody reads (couriers and clients their carrier's);
	// technicians install and change them; only admins delete.
	"GET /api/v1/lockers":                           {everyone, access.ScopeLockersRead},
	"POST /api/v1/lockers":                          {fleetOps, noClients},
	"POST /api/v1/lockers/import":                   {fleetOps, noClients},
	"GET /api/v1/lockers/{id}":                      {everyone, access.ScopeLockersRead},
	"PATCH /api/v1/lockers/{id}":                    {fleetOps, noClients},
	"DELETE /api/v1/lockers/{id}":                   {adminOnly, noClients},
	"GET /api/v1/lockers/{id}/cells":                {everyone, access.ScopeLockersRead},
	"POST /api/v1/lockers/{id}/certificates":        {fleetOps, noClients},
	"POST /api/v1/lockers/{id}/certificates/revoke": {fleetOps, noClients},
	"POST /api/v1/lockers/{id}/enroll-tokens":       {fleetOps, noClients},

	// The live twin and its history.
	"GET /api/v1/lockers/{id}/twin":         {everyone, access.ScopeLockersRead},
	"PUT /api/v1/lockers/{id}/desired":      {fleetOps, noClients},
	"GET /api/v1/lockers/{id}/events":       {everyone, access.ScopeLockersRead},
	"GET /api/v1/lockers/{id}/connectivity": {everyone, access.ScopeLockersRead},

	// Fleet views and the live stream (filtered to the caller's carrier).
	"GET /api/v1/fleet/summary":  {everyone, access.ScopeLockersRead},
	"GET /api/v1/fleet/overview": {everyone, access.ScopeLockersRead},
	"GET /api/v1/stream":         {everyone, access.ScopeLockersRead},

	// Telemetry.
	"GET /api/v1/lockers/{id}/telemetry":         {everyone, access.ScopeTelemetryRead},
	"GET /api/v1/lockers/{id}/telemetry/metrics": {everyone, access.ScopeTelemetryRead},
	"GET /api/v1/lockers/{id}/telemetry/latest":  {everyone, access.ScopeTelemetryRead},
	"GET /api/v1/fleet/telemetry/latest":         {everyone, access.ScopeTelemetryRead},

	// Locker models: not carrier data; everybody reads, technicians write.
	"GET /api/v1/models":         {everyone, access.ScopeLockersRead},
	"POST /api/v1/models":        {fleetOps, noClients},
	"GET /api/v1/models/{id}":    {everyone, access.ScopeLockersRead},
	"PUT /api/v1/models/{id}":    {fleetOps, noClients},
	"DELETE /api/v1/models/{id}": {fleetOps, noClients},

	// Commands (web/commands.go): technicians send any command; couriers and
	// clients with commands:write open cells of their carrier's lockers (the
	// handler refuses them other methods); everybody reads them, a carrier's
	// callers only those of its lockers.
	"POST /api/v1/lockers/{id}/commands":          {[]string{admin, technician, courier}, access.ScopeCommandsWrite},
	"POST /api/v1/lockers/{id}/cells/{cell}/open": {[]string{admin, technician, courier}, access.ScopeCommandsWrite},
	"GET /api/v1/commands":                        {everyone, access.ScopeCommandsRead},
	"GET /api/v1/commands/{id}":                   {everyone, access.ScopeCommandsRead},

	// Parcels (web/parcels.go): delivery services (parcels:write), couriers,
	// technicians and admins create and cancel; couriers, technicians and
	// admins open the cell to drop off or collect; a carrier's callers only
	// the carrier's parcels.
	"POST /api/v1/parcels": {[]string{admin, technician, courier}, access.ScopeParcelsWrite},
	// Lockers near a point that can take a parcel now: for those who create deliveries.
	"GET /api/v1/availability": {[]string{admin, technician, courier}, access.ScopeParcelsWrite},
	// Partners in their own format (connectors): as the parcel routes they stand for.
	"POST /api/v1/connectors/{name}/orders":        {[]string{admin, technician, courier}, access.ScopeParcelsWrite},
	"POST /api/v1/connectors/{name}/cancel":        {[]string{admin, technician, courier}, access.ScopeParcelsWrite},
	"GET /api/v1/connectors/{name}/orders/{order}": {everyone, access.ScopeParcelsRead},
	"GET /api/v1/parcels":                          {everyone, access.ScopeParcelsRead},
	"GET /api/v1/parcels/{id}":                     {everyone, access.ScopeParcelsRead},
	"POST /api/v1/parcels/{id}/dropoff":            {[]string{admin, technician, courier}, noClients},
	"POST /api/v1/parcels/{id}/collect":            {[]string{admin, technician, courier}, noClients},
	"POST /api/v1/parcels/{id}/cancel":             {[]string{admin, technician, courier}, access.ScopeParcelsWrite},
	// What a parcel's recipient was sent: as the parcel.
	"GET /api/v1/parcels/{id}/notifications": {everyone, access.ScopeParcelsRead},

	// Notification templates (web/templates.go): the wording recipients
	// read is the operator's, so admins edit it; technicians read and
	// preview (to answer "what did the customer get?").
	"GET /api/v1/templates":                      {fleetOps, noClients},
	"POST /api/v1/templates/preview":             {fleetOps, noClients},
	"GET /api/v1/templates/{event}/{channel}":    {fleetOps, noClients},
	"PUT /api/v1/templates/{event}/{channel}":    {adminOnly, noClients},
	"DELETE /api/v1/templates/{event}/{channel}": {adminOnly, noClients},
	// Corrections (recipient, storage period, size) and moves between
	// cells: technicians and admins, on the dashboard or with hubctl.
	"PATCH /api/v1/parcels/{id}":     {fleetOps, noClients},
	"POST /api/v1/parcels/{id}/move": {fleetOps, noClients},
	// Returns: what couriers collect (per locker and carrier), and customer
	// returns created like deliveries.
	"GET /api/v1/returns":  {everyone, access.ScopeParcelsRead},
	"POST /api/v1/returns": {[]string{admin, technician, courier}, access.ScopeParcelsWrite},
	// Service access: technicians open any cell in service mode, from the
	// dashboard or with a one-time code at the locker.
	"POST /api/v1/lockers/{id}/cells/{cell}/service-open": {fleetOps, noClients},
	"POST /api/v1/lockers/{id}/service-codes":             {fleetOps, noClients},

	// The audit log (web/audit.go): admins only.
	"GET /api/v1/audit": {adminOnly, noClients},

	// Users and API clients: admins only.
	"GET /api/v1/users":                  {adminOnly, noClients},
	"POST /api/v1/users":                 {adminOnly, noClients},
	"GET /api/v1/users/{name}":           {adminOnly, noClients},
	"PATCH /api/v1/users/{name}":         {adminOnly, noClients},
	"POST /api/v1/users/{name}/password": {adminOnly, noClients},
	"GET /api/v1/clients":                {adminOnly, noClients},
	"POST /api/v1/clients":               {adminOnly, noClients},
	"DELETE /api/v1/clients/{name}":      {adminOnly, noClients},
	"PATCH /api/v1/clients/{name}":       {adminOnly, noClients},
	// Admin bearer tokens (hubctl token): admins only.
	"GET /api/v1/tokens":         {adminOnly, noClients},
	"POST /api/v1/tokens":        {adminOnly, noClients},
	"DELETE /api/v1/tokens/{id}": {adminOnly, noClients},

	// Webhook endpoints (web/webhooks.go): each API client manages its own;
	// admins read any client's (never the secret). An admin calling the
	// client's own routes gets 400 not_a_client.
	"PUT /api/v1/webhook":                {adminOnly, anyClient},
	"GET /api/v1/webhook":                {adminOnly, anyClient},
	"DELETE /api/v1/webhook":             {adminOnly, anyClient},
	"GET /api/v1/clients/{name}/webhook": {adminOnly, noClients},
	// The delivery log and replay: a client its own webhooks, admins any
	// client's.
	"GET /api/v1/webhook/deliveries":                                   {adminOnly, anyClient},
	"POST /api/v1/webhook/deliveries/{delivery}/replay":                {adminOnly, anyClient},
	"GET /api/v1/clients/{name}/webhook-deliveries":                    {adminOnly, noClients},
	"POST /api/v1/clients/{name}/webhook-deliveries/{delivery}/replay": {adminOnly, noClients},

	// Alarms (web/alarms.go): on-call staff, technicians and admins act on
	// alarms and silence them; viewers read; technicians and admins set the
	// rules; only admins the routing (it holds the receivers' secrets).
	"GET /api/v1/alarms":                  {alarmReaders, noClients},
	"GET /api/v1/alarms/kinds":            {alarmReaders, noClients},
	"GET /api/v1/alarms/notifications":    {alarmReaders, noClients},
	"GET /api/v1/alarms/{id}":             {alarmReaders, noClients},
	"POST /api/v1/alarms/{id}/ack":        {alarmActors, noClients},
	"POST /api/v1/alarms/{id}/resolve":    {alarmActors, noClients},
	"POST /api/v1/alarms/{id}/mute":       {alarmActors, noClients},
	"GET /api/v1/alarms/silences":         {alarmReaders, noClients},
	"POST /api/v1/alarms/silences":        {alarmActors, noClients},
	"DELETE /api/v1/alarms/silences/{id}": {alarmActors, noClients},
	"GET /api/v1/alarms/rules":            {alarmReaders, noClients},
	"PUT /api/v1/alarms/rules":            {fleetOps, noClients},
	"GET /api/v1/alarms/routing":          {alarmActors, noClients},
	"PUT /api/v1/alarms/routing":          {adminOnly, noClients},
	"GET /api/v1/lockers/{id}/alarms":     {alarmReaders, noClients},

	// Firmware updates (web/ota.go): technicians and admins upload
	// artifacts and run rollouts; on-call staff may also pause one.
	"POST /api/v1/ota/artifacts":              {fleetOps, noClients},
	"GET /api/v1/ota/artifacts":               {otaReaders, noClients},
	"GET /api/v1/ota/artifacts/{id}":          {otaReaders, noClients},
	"POST /api/v1/ota/rollouts":               {fleetOps, noClients},
	"GET /api/v1/ota/rollouts":                {otaReaders, noClients},
	"GET /api/v1/ota/rollouts/{id}":           {otaReaders, noClients},
	"GET /api/v1/ota/rollouts/{id}/lockers":   {otaReaders, noClients},
	"POST /api/v1/ota/rollouts/{id}/start":    {fleetOps, noClients},
	"POST /api/v1/ota/rollouts/{id}/pause":    {otaStoppers, noClients},
	"POST /api/v1/ota/rollouts/{id}/resume":   {fleetOps, noClients},
	"POST /api/v1/ota/rollouts/{id}/cancel":   {otaStoppers, noClients},
	"POST /api/v1/ota/rollouts/{id}/approve":  {fleetOps, noClients},
	"POST /api/v1/ota/rollouts/{id}/rollback": {fleetOps, noClients},
	// Video (web/video.go): WHEP viewers of a locker's camera and the clips
	// recorded on alarms.
	"POST /api/v1/lockers/{id}/video/whep":            {videoViewers, noClients},
	"DELETE /api/v1/lockers/{id}/video/whep/{viewer}": {videoViewers, noClients},
	"GET /api/v1/lockers/{id}/video":                  {videoViewers, noClients},
	"GET /api/v1/recordings":                          {videoViewers, noClients},
	"GET /api/v1/recordings/{id}":                     {videoViewers, noClients},
	"GET /api/v1/recordings/{id}/file":                {videoViewers, noClients},
}

// permitted reports whether p may call rt; a route missing from the matrix
// is refused.
func permitted(p access.Principal, rt route) bool {
	a, ok := roleMatrix[rt.method+" "+rt.path]
	switch {
	case !ok:
		return false
	case p.Role == access.RoleClient:
		return a.scope == anyClient || (a.scope != noClients && p.HasScope(a.scope))
	case !access.ValidRole(p.Role):
		return false
	default:
		return slices.Contains(a.roles, p.Role)
	}
}

// can lists the non-public routes p may call, in route order.
func (a *API) can(p access.Principal) []string {
	out := []string{}
	for _, rt := range a.routes {
		if !rt.public && permitted(p, rt) {
			out = append(out, rt.method+" "+rt.path)
		}
	}
	return out
}

// denial is the message of a 403 from the matrix.
func denial(p access.Principal, rt route) string {
	a, ok := roleMatrix[rt.method+" "+rt.path]
	switch {
	case !ok:
		return rt.method + " " + rt.path + " is in no row of the role matrix (web/roles.go), so nobody may call it"
	case p.Role == access.RoleClient && a.scope != noClients:
		return "this API client lacks the scope " + a.scope + " for " + rt.method + " " + rt.path
	case p.Role == access.RoleClient:
		return "API clients may not call " + rt.method + " " + rt.path
	default:
		return "the role " + p.Role + " may not call " + rt.method + " " + rt.path
	}
}

// carrierScoped reports whether the route concerns one locker, named by the
// {id} path value, so a carrier-scoped caller gets 404 for other lockers.
func carrierScoped(path string) bool {
	return path == "/api/v1/lockers/{id}" || strings.HasPrefix(path, "/api/v1/lockers/{id}/")
}

// missingRoleRows lists the routes without a row, as the line to add, and
// the rows without a route.
func missingRoleRows(routes []route) (missing, stale []string) {
	served := map[string]bool{}
	for _, rt := range routes {
		if rt.public {
			continue
		}
		k := rt.method + " " + rt.path
		served[k] = true
		if _, ok := roleMatrix[k]; !ok {
			// The narrowest row; widen it to what the route needs.
			missing = append(missing, fmt.Sprintf("\t%q: {adminOnly, noClients},", k))
		}
	}
	for k := range roleMatrix {
		if !served[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	return missing, stale
}

// AccessTable renders the matrix as the Markdown table of docs/access.md.
func (a *API) AccessTable() string {
	var keys []string
	for _, rt := range a.routes {
		if !rt.public {
			keys = append(keys, rt.method+" "+rt.path)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		pi, pj := keys[i][strings.IndexByte(keys[i], ' ')+1:], keys[j][strings.IndexByte(keys[j], ' ')+1:]
		if pi != pj {
			return pi < pj
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	b.WriteString("| Endpoint | admin | technician | courier | oncall | viewer | API client |\n")
	b.WriteString("|---|:-:|:-:|:-:|:-:|:-:|---|\n")
	for _, k := range keys {
		al, ok := roleMatrix[k]
		fmt.Fprintf(&b, "| `%s` |", k)
		for _, r := range access.Roles {
			mark := "—"
			if ok && slices.Contains(al.roles, r) {
				mark = "✓"
			}
			fmt.Fprintf(&b, " %s |", mark)
		}
		switch {
		case !ok || al.scope == noClients:
			b.WriteString(" — |\n")
		case al.scope == anyClient:
			b.WriteString(" any client |\n")
		default:
			fmt.Fprintf(&b, " `%s` |\n", al.scope)
		}
	}
	return b.String()
}
