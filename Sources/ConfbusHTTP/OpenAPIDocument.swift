import ConfbusCore
import ConfbusEngine

/// OpenAPI 3.1 of the API as it exists. A test checks that every route the router serves is
/// here and nothing else is, so the document stays true as the API grows.
enum OpenAPIDocument {
    struct Operation {
        var method: String
        var path: String
        var summary: String
        var query: [(name: String, description: String)] = []
        var requiredQuery: Set<String> = []
        /// The request body's schema (JSON; a batch may also be YAML); every body is required.
        var body: JSONValue? = nil
        /// Optional request headers the handler reads.
        var headers: [(name: String, description: String, schema: JSONValue)] = []
        var responses: [String: String]
        var admin = false
    }

    static let serviceName: JSONValue = ["type": "string", "pattern": #"^(?!.*\.\.)[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"#]
    static let reasonHeader = (name: "X-Confbus-Reason", description: "why, for the audit log (at most 1000 characters are kept)",
                               schema: ["type": "string"] as JSONValue)
    static let ifMatchHeader = (name: "If-Match", description: "the version number or the quoted checksum the change expects, or *",
                                schema: ["type": "string", "pattern": #"^(\*|[0-9]{1,10}|"[0-9]{1,10}"|sha256:[0-9a-f]{64}|"sha256:[0-9a-f]{64}")$"#] as JSONValue)

    static let batchKinds = ["override", "patch", "rollback"]

    /// One batch entry: a service and exactly one of a replacing override, a merge patch or a rollback.
    static let batchBody: JSONValue = [
        "type": "object",
        "required": ["updates"],
        "properties": [
            "reason": ["type": "string"],
            "dry_run": ["type": "boolean"],
            "updates": [
                "type": "array", "minItems": 1, "maxItems": 1000,
                "items": [
                    "type": "object",
                    "required": ["service"],
                    "properties": [
                        "service": serviceName,
                        "override": ["type": "object"], "patch": ["type": "object"], "rollback": ["type": "integer", "minimum": 1, "maximum": 2147483647],
                    ],
                    // Exactly one kind: each alternative requires its own and none of the others.
                    "oneOf": .array(batchKinds.map { kind in
                        ["required": [.string(kind)],
                         "not": ["anyOf": .array(batchKinds.filter { $0 != kind }.map { ["required": [.string($0)]] })]]
                    }),
                ],
            ],
        ],
    ]

    /// `POST /v1/config/{service}/rollouts` (CONTRACT.md §8): one change and the policy.
    static let rolloutBody: JSONValue = [
        "type": "object",
        "properties": [
            "override": ["type": "object"], "patch": ["type": "object"], "rollback": ["type": "integer", "minimum": 1, "maximum": 2147483647],
            "reason": ["type": "string"],
            "steps": ["type": "array", "minItems": 1, "maxItems": 100, "items": ["type": "integer", "minimum": 1, "maximum": 100]],
            "bake": duration, "ack_timeout": duration,
            "max_rejected": ["type": "integer", "minimum": 0, "maximum": 1000000],
        ],
        "oneOf": .array(batchKinds.map { kind in
            ["required": [.string(kind)], "not": ["anyOf": .array(batchKinds.filter { $0 != kind }.map { ["required": [.string($0)]] })]]
        }),
    ]

    /// A duration as settings write it (`"30s"`, `"500ms"`, `"2m"`) or a number of seconds, up to a day.
    static let duration: JSONValue = ["oneOf": [
        ["type": "string", "pattern": #"^[0-9]{1,5}(\.[0-9]{1,3})?(ms|s|m)?$"#],
        ["type": "number", "minimum": 0, "maximum": 86400],
    ]]

    static let rolloutID: JSONValue = ["type": "string", "pattern": "^[0-9a-z-]{1,64}$"]

    /// What `GET /v1/export` writes and `POST /v1/import` reads (confbus-export/1).
    static let exportBody: JSONValue = [
        "type": "object",
        "required": ["format", "services"],
        "properties": [
            "format": ["const": .string(ExportDocument.format)],
            "environment": ["type": "string"],
            "history": ["type": "boolean"],
            "secrets_masked": ["const": false],
            "services": [
                "type": "array",
                "items": [
                    "type": "object",
                    "required": ["service", "versions"],
                    "properties": [
                        "service": serviceName,
                        "override_layer": ["type": ["object", "null"]],
                        "versions": [
                            "type": "array",
                            "items": [
                                "type": "object",
                                "required": ["version", "config", "checksum", "source", "author", "created_at", "environment"],
                                "properties": [
                                    "version": ["type": "integer", "minimum": 1, "maximum": 2147483647],
                                    "config": ["type": "object"],
                                    "checksum": ["type": "string", "pattern": "^sha256:[0-9a-f]{64}$"],
                                    "source": ["enum": ["files", "override", "batch", "rollback", "import", "rollout", "repair"]],
                                    "author": ["type": "string"],
                                    "reason": ["type": ["string", "null"]],
                                    "created_at": ["type": "string", "format": "date-time"],
                                    "environment": ["type": "string"],
                                    "batch_id": ["type": ["string", "null"], "format": "uuid"],
                                    "override_layer": ["type": ["object", "null"]],
                                ],
                            ],
                        ],
                    ],
                ],
            ],
        ],
    ]

    /// The methods the API serves at a concrete path (`HEAD` with every `GET`), matched against the
    /// documented paths with `{service}` standing for one segment; nil when no path matches.
    static func methods(at path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        var methods: [String] = []
        for (template, allowed) in methodsByPath {
            let parts = template.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == segments.count,
                  zip(parts, segments).allSatisfy({ $0.hasPrefix("{") && $0.hasSuffix("}") ? !$1.isEmpty : $0 == $1 })
            else { continue }
            methods += allowed
        }
        return methods.isEmpty ? nil : Array(Set(methods)).sorted()
    }

    private static let methodsByPath: [String: [String]] = {
        var table: [String: [String]] = [:]
        for operation in operations {
            let method = operation.method.uppercased()
            table[operation.path, default: []].append(method)
            if method == "GET" { table[operation.path, default: []].append("HEAD") }
        }
        return table
    }()

    static let operations: [Operation] = [
        Operation(method: "get", path: "/healthz", summary: "Liveness", responses: ["200": "alive"]),
        Operation(method: "get", path: "/readyz", summary: "Readiness: a PostgreSQL primary and an MQTT broker connected (with several brokers, each one's state)",
                  responses: ["200": "ready", "503": "names what is down"]),
        Operation(method: "get", path: "/metrics", summary: "Prometheus metrics", responses: ["200": "text exposition format"]),
        Operation(method: "get", path: "/openapi.json", summary: "This document", responses: ["200": "OpenAPI 3.1"]),
        Operation(method: "get", path: "/v1/config/{service}", summary: "The resolved document of a service",
                  query: [("version", "a past version"), ("pointer", "a JSON pointer into config"),
                          ("wait", "long-poll up to this many seconds (at most 60)"), ("after", "with wait: a version above this")],
                  responses: ["200": "resolved document (ETag: quoted checksum)", "304": "not modified / nothing newer",
                              "400": "malformed name or parameter", "404": "unknown service or version"]),
        Operation(method: "get", path: "/v1/config/{service}/history", summary: "Versions, newest first",
                  query: [("limit", "at most this many (default 50)"), ("before", "versions below this")],
                  responses: ["200": "history", "404": "unknown service"]),
        Operation(method: "get", path: "/v1/config/{service}/diff", summary: "Leaf-level changes between two versions",
                  query: [("from", "version"), ("to", "version")], requiredQuery: ["from", "to"], responses: ["200": "changes", "404": "unknown version"]),
        Operation(method: "get", path: "/v1/services", summary: "Every service with version and instance counts; state ok, invalid or diverged (a version the broker held and the database lost, repaired)",
                  responses: ["200": "services"]),
        Operation(method: "get", path: "/v1/events",
                  summary: "Server-sent events naming each readable service that changes on this node: version, instance (register, ack, health), rollout; ?service= (repeatable) narrows them",
                  responses: ["200": "text/event-stream", "400": "a service name is invalid", "401": "read token required"]),
        Operation(method: "get", path: "/v1/services/{service}/instances", summary: "Instances, health and applied versions",
                  responses: ["200": "instances", "404": "unknown service"]),
        Operation(method: "get", path: "/v1/flags/{service}", summary: "The service's feature flags (CONTRACT.md §12) with their pointers; secret ones left out",
                  query: [("version", "a version other than the released one")],
                  responses: ["200": "flags", "404": "unknown service or version"]),
        Operation(method: "post", path: "/v1/flags/{service}/evaluate",
                  summary: "Evaluate the service's flags (or those named) for one context by the rule of CONTRACT.md §12",
                  query: [("version", "a version other than the released one")],
                  body: ["type": "object", "required": ["context"], "additionalProperties": false, "properties": [
                      "context": ["type": "object", "required": ["key"], "additionalProperties": false,
                                  "properties": ["key": ["type": "string", "minLength": 1], "attributes": ["type": "object"]]],
                      "flags": ["type": "array", "items": ["type": "string"]],
                  ]],
                  responses: ["200": "each flag's value and reason", "400": "the context is not valid", "404": "unknown service, version or flag"]),
        Operation(method: "get", path: "/v1/schemas/{service}", summary: "The service's JSON Schema", responses: ["200": "schema", "404": "no schema"]),
        Operation(method: "post", path: "/v1/reload", summary: "Read the config tree again and publish what changed",
                  responses: ["200": "what was committed, unchanged or refused", "401": "admin token required", "503": "database down"],
                  admin: true),
        Operation(method: "put", path: "/v1/config/{service}/override", summary: "Replace the ops override layer (If-Match optional)",
                  body: ["type": "object"], headers: [ifMatchHeader, reasonHeader],
                  responses: ["200": "the resulting document", "401": "admin token required", "409": "a rollout of the service is running",
                              "412": "If-Match mismatch", "422": "the result is invalid; nothing stored"], admin: true),
        Operation(method: "patch", path: "/v1/config/{service}/override", summary: "Merge-patch the ops override layer (RFC 7396)",
                  body: ["type": "object"], headers: [ifMatchHeader, reasonHeader],
                  responses: ["200": "the resulting document", "401": "admin token required", "409": "a rollout of the service is running",
                              "412": "If-Match mismatch", "422": "the result is invalid; nothing stored"], admin: true),
        Operation(method: "delete", path: "/v1/config/{service}/override", summary: "Clear the ops override layer",
                  headers: [ifMatchHeader, reasonHeader],
                  responses: ["200": "the resulting document", "401": "admin token required", "409": "a rollout of the service is running",
                              "412": "If-Match mismatch"], admin: true),
        Operation(method: "post", path: "/v1/config/{service}/rollback", summary: "A new version whose config is version N's",
                  body: ["type": "object", "required": ["version"], "properties": ["version": ["type": "integer", "minimum": 1, "maximum": 2147483647]]],
                  headers: [ifMatchHeader, reasonHeader],
                  responses: ["200": "the new document", "401": "admin token required", "404": "no such version",
                              "409": "a rollout of the service is running", "412": "If-Match mismatch",
                              "422": "version N's config no longer validates"], admin: true),
        Operation(method: "post", path: "/v1/config/{service}/rollouts",
                  summary: "Start a rollout: the change committed as the candidate, released step by step on the instances' acks",
                  body: rolloutBody, headers: [reasonHeader],
                  responses: ["201": "the rollout", "401": "admin token required", "409": "a rollout of the service is running",
                              "422": "the change is invalid, changes nothing, or the policy cannot run"], admin: true),
        Operation(method: "get", path: "/v1/config/{service}/rollouts", summary: "The service's rollouts, newest first",
                  query: [("limit", "at most this many (default 20, at most 200)")], responses: ["200": "rollouts"]),
        Operation(method: "get", path: "/v1/rollouts/{id}", summary: "A rollout: state, step, cohort and each member's answer",
                  responses: ["200": "the rollout", "404": "no such rollout"]),
        Operation(method: "post", path: "/v1/rollouts/{id}/promote", summary: "Release a running rollout's candidate now",
                  headers: [reasonHeader], responses: ["200": "the rollout, completed", "404": "no such rollout", "409": "it has ended"], admin: true),
        Operation(method: "post", path: "/v1/rollouts/{id}/abort", summary: "Roll a running rollout back now",
                  headers: [reasonHeader], responses: ["200": "the rollout, rolled back", "404": "no such rollout", "409": "it has ended"], admin: true),
        Operation(method: "post", path: "/v1/batch", summary: "Overrides, patches and rollbacks for many services, all or nothing (JSON or YAML; Idempotency-Key)",
                  body: batchBody,
                  headers: [("Idempotency-Key", "a retry with the same key and body gets the first answer (at most 200 characters are kept)",
                             ["type": "string"]), reasonHeader],
                  responses: ["200": "batch id and each service's document and changes", "400": "malformed batch", "404": "an unknown service",
                              "401": "admin token required", "409": "a rollout of one of the services is running", "413": "too large",
                              "422": "a change is invalid; nothing stored"], admin: true),
        Operation(method: "post", path: "/v1/validate", summary: "A batch resolved and validated, with diffs; nothing stored",
                  body: batchBody,
                  responses: ["200": "documents and changes", "401": "admin token required", "404": "an unknown service", "422": "invalid"],
                  admin: true),
        Operation(method: "get", path: "/v1/export", summary: "Every service's layers and versions as one document",
                  query: [("history", "all versions (true) or only the latest (false)"),
                          ("secrets", "secret values in full (true; needed to import) or masked as \"***\" (false, the default)")],
                  responses: ["200": "confbus-export/1 document", "401": "admin token required"], admin: true),
        Operation(method: "post", path: "/v1/import", summary: "Store an export (full history) into a database without those services",
                  body: exportBody, headers: [reasonHeader],
                  responses: ["200": "versions imported", "401": "admin token required", "409": "a service already exists",
                              "422": "history with gaps or checksums that do not match"], admin: true),
        Operation(method: "get", path: "/v1/audit", summary: "Accepted and refused changes, newest first",
                  query: [("service", "only this service"), ("limit", "at most this many (default 100)")],
                  responses: ["200": "audit entries", "401": "admin token required"], admin: true),
    ]

    static let problem: JSONValue = [
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": [
            "type": ["type": "string"], "title": ["type": "string"], "status": ["type": "integer"], "detail": ["type": "string"],
            "errors": ["type": "array", "items": ["type": "object", "properties": ["path": ["type": "string"], "message": ["type": "string"]]]],
        ],
    ]

    /// The constraints the handlers enforce on each query parameter.
    static func querySchema(_ name: String) -> JSONValue {
        switch name {
        // RFC 6901: "/" then tokens where "~" is only ever "~0" or "~1".
        case "pointer": ["type": "string", "pattern": "^(/([^~]|~[01])*)+$"]
        case "service": serviceName
        case "from", "to": ["type": "integer", "minimum": 1, "maximum": 2147483647]
        case "history", "secrets": ["type": "boolean"]
        case "version": ["type": "integer", "minimum": 1, "maximum": 2147483647]
        // `wait` above 60 and `limit` above 1000 are accepted and clamped (CONTRACT.md §5), up to any 32-bit integer.
        default: ["type": "integer", "minimum": 0, "maximum": 2147483647]
        }
    }

    /// Answers every operation of a kind can give besides its own: a malformed service name, a
    /// missing token, a token past its rate, a write while the database is down.
    static func commonResponses(_ op: Operation) -> [String: String] {
        var common: [String: String] = [:]
        if op.path.contains("{service}") {
            common["400"] = "malformed service name or parameter"
            common["404"] = "unknown service"
        }
        if !op.query.isEmpty || op.body != nil { common["400"] = "a malformed parameter or body" }
        if op.body != nil { common["413"] = "the body is larger than max_document_bytes" }
        let operational = ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(op.path)
        guard !operational else { return common }
        common["401"] = op.admin ? "admin token required" : "a read token is required (when read tokens are set)"
        common["429"] = "this token is past its rate limit (Retry-After says when to retry)"
        if op.admin && op.method != "get" { common["503"] = "the database is unreachable; nothing was changed" }
        return common
    }

    static let document: JSONValue = {
        var paths: [String: JSONValue] = [:]
        for op in operations {
            var parameters: [JSONValue] = []
            if op.path.contains("{service}") {
                parameters.append(["name": "service", "in": "path", "required": true, "schema": serviceName])
            }
            if op.path.contains("{id}") {
                parameters.append(["name": "id", "in": "path", "required": true, "schema": rolloutID])
            }
            for h in op.headers {
                parameters.append(["name": .string(h.name), "in": "header", "required": false, "description": .string(h.description),
                                   "schema": h.schema])
            }
            for q in op.query {
                parameters.append(["name": .string(q.name), "in": "query", "required": .bool(op.requiredQuery.contains(q.name)), "description": .string(q.description),
                                   "schema": querySchema(q.name)])
            }
            var responses: [String: JSONValue] = [:]
            for (code, description) in commonResponses(op).merging(op.responses, uniquingKeysWith: { _, own in own }) {
                let json = code.hasPrefix("2") || code == "304" ? "application/json" : "application/problem+json"
                var response: [String: JSONValue] = ["description": .string(description)]
                if op.path == "/v1/events" && code == "200" {
                    response["content"] = ["text/event-stream": ["schema": ["type": "string"]]]
                } else if code != "304" && op.path != "/metrics" {
                    response["content"] = .object([json: json == "application/problem+json"
                        ? ["schema": ["$ref": "#/components/schemas/Problem"]] : ["schema": ["type": "object"]]])
                }
                responses[code] = .object(response)
            }
            var operation: [String: JSONValue] = ["summary": .string(op.summary), "responses": .object(responses)]
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            if let body = op.body {
                operation["requestBody"] = ["required": true, "content": ["application/json": ["schema": body]]]
            }
            if op.admin { operation["security"] = [["admin": []]] }
            var item = paths[op.path]?.objectValue ?? [:]
            item[op.method] = .object(operation)
            paths[op.path] = .object(item)
        }
        return [
            "openapi": "3.1.0",
            "info": ["title": "confbus", "version": "0.2.0",
                     "description": "Configuration distributor: HTTP pull and admin API (CONTRACT.md §5)."],
            "paths": .object(paths),
            "components": [
                "schemas": ["Problem": problem],
                "securitySchemes": ["admin": ["type": "http", "scheme": "bearer"], "read": ["type": "http", "scheme": "bearer"]],
            ],
        ]
    }()
}
