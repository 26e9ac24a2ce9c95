/// The one error type confbus shows the outside world. `code` is what problem+json and
/// `config/error/<service>` carry; new codes can be added without breaking any `switch`.
public struct ConfbusError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String {
            case invalidName = "invalid_name"
            case invalidYAML = "invalid_yaml"
            case invalidJSON = "invalid_json"
            case invalidSchema = "invalid_schema"
            case schemaViolation = "schema_violation"
            case missingSchema = "missing_schema"
            case invalidOverride = "invalid_override"
            case documentTooLarge = "document_too_large"
            case unreadableFile = "unreadable_file"
            case versionConflict = "version_conflict"
            case storeUnavailable = "store_unavailable"
            case unknownService = "unknown_service"
            case invalidPayload = "invalid_payload"
            case notFound = "not_found"
            case badRequest = "bad_request"
            case unavailable = "unavailable"
            case alreadyExists = "already_exists"
            case tooLargeToPublish = "too_large_to_publish"
            case invalidValue = "invalid_value"
            case rateLimited = "rate_limited"
            case requestInFlight = "request_in_flight"
            case sealedValue = "sealed_value"
            case rolloutInProgress = "rollout_in_progress"
            case rolloutFinished = "rollout_finished"
            case nothingToRollOut = "nothing_to_roll_out"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public var description: String { base.rawValue }

        public static let invalidName = Code(.invalidName)
        public static let invalidYAML = Code(.invalidYAML)
        public static let invalidJSON = Code(.invalidJSON)
        public static let invalidSchema = Code(.invalidSchema)
        public static let schemaViolation = Code(.schemaViolation)
        public static let missingSchema = Code(.missingSchema)
        public static let invalidOverride = Code(.invalidOverride)
        public static let documentTooLarge = Code(.documentTooLarge)
        public static let unreadableFile = Code(.unreadableFile)
        public static let versionConflict = Code(.versionConflict)
        public static let storeUnavailable = Code(.storeUnavailable)
        public static let unknownService = Code(.unknownService)
        public static let invalidPayload = Code(.invalidPayload)
        public static let notFound = Code(.notFound)
        public static let badRequest = Code(.badRequest)
        public static let unavailable = Code(.unavailable)
        public static let alreadyExists = Code(.alreadyExists)
        /// The encoded document would exceed what can be published (CONTRACT.md §6b).
        public static let tooLargeToPublish = Code(.tooLargeToPublish)
        /// A value that cannot be carried (a string or key with U+0000, §6b).
        public static let invalidValue = Code(.invalidValue)
        public static let rateLimited = Code(.rateLimited)
        /// A request with the same idempotency key is still being committed.
        public static let requestInFlight = Code(.requestInFlight)
        /// A value sealed at rest that this node cannot open: another key, or altered (§10).
        public static let sealedValue = Code(.sealedValue)
        /// The service has a rollout running: other writes wait for its end (CONTRACT.md §8).
        public static let rolloutInProgress = Code(.rolloutInProgress)
        /// The rollout has completed or rolled back: it can be neither promoted nor aborted.
        public static let rolloutFinished = Code(.rolloutFinished)
        /// The change a rollout was asked for leaves the config as it is.
        public static let nothingToRollOut = Code(.nothingToRollOut)
    }

    public var code: Code
    public var service: String?
    /// A plain message. It never holds a secret or a value from the document.
    public var message: String
    public var location: SourceLocation?
    public var issues: [ValidationIssue]

    public init(code: Code, service: String? = nil, message: String, location: SourceLocation? = nil,
                issues: [ValidationIssue] = []) {
        self.code = code
        self.service = service
        self.message = message
        self.location = location
        self.issues = issues
    }

    /// The issues, or one at the root holding the message when there are none: what an answer
    /// lists under `errors` for this error.
    public var locatedIssues: [ValidationIssue] {
        issues.isEmpty ? [ValidationIssue(instancePath: .root, keywordPath: .root, message: message)] : issues
    }

    public var description: String {
        var parts: [String] = []
        if let service { parts.append(service) }
        if let location { parts.append(location.description) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}

/// One failed assertion of a validation: where in the instance, which schema keyword, and why.
public struct ValidationIssue: Sendable, Hashable, CustomStringConvertible {
    /// JSON pointer of the offending value, or of the missing or extra property.
    public var instancePath: JSONPointer
    /// JSON pointer into the schema of the keyword that failed (through `$ref`s as evaluated).
    public var keywordPath: JSONPointer
    public var message: String
    /// Where the offending value was written, when it came from a file.
    public var location: SourceLocation?
    /// In a batch: the service and the index of its entry.
    public var service: String?
    public var index: Int?

    public init(instancePath: JSONPointer, keywordPath: JSONPointer, message: String,
                location: SourceLocation? = nil) {
        self.instancePath = instancePath
        self.keywordPath = keywordPath
        self.message = message
        self.location = location
    }

    public var description: String {
        let path = instancePath.tokens.isEmpty ? "(root)" : instancePath.description
        return "\(path): \(message)"
    }
}
