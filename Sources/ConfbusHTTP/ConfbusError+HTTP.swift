import ConfbusCore
import Foundation
import Hummingbird
import Logging
import NIOCore

/// RFC 9457 problem details: every error confbus answers over HTTP.
public struct Problem: Error, Sendable {
    public var status: HTTPResponse.Status
    public var title: String
    public var detail: String
    public var code: String
    public var errors: [ValidationIssue]
    /// Seconds for `Retry-After`, when the client should come back later.
    public var retryAfter: Int?

    public init(_ status: HTTPResponse.Status, code: String, detail: String, errors: [ValidationIssue] = [], retryAfter: Int? = nil) {
        self.status = status
        self.title = status.reasonPhrase
        self.detail = detail
        self.code = code
        self.errors = errors
        self.retryAfter = retryAfter
    }

    public init(_ error: ConfbusError) {
        let status: HTTPResponse.Status = switch error.code {
        case .invalidName, .badRequest, .invalidJSON, .invalidYAML, .invalidPayload: .badRequest
        case .notFound, .unknownService: .notFound
        case .schemaViolation, .invalidOverride, .invalidValue, .invalidSchema, .missingSchema, .sealedValue, .nothingToRollOut: .unprocessableContent
        case .versionConflict: .preconditionFailed
        case .alreadyExists, .requestInFlight, .rolloutInProgress, .rolloutFinished: .conflict
        case .documentTooLarge, .tooLargeToPublish: .contentTooLarge
        case .rateLimited: .tooManyRequests
        default: .serviceUnavailable
        }
        self.init(status, code: error.code.description, detail: error.message, errors: error.issues)
    }

    var json: JSONValue {
        var object: [String: JSONValue] = [
            "type": .string("https://confbus.dev/problems/\(code)"),
            "title": .string(title),
            "status": .integer(Int(status.code)),
            "detail": .string(detail),
        ]
        if !errors.isEmpty {
            object["errors"] = .array(errors.map { issue in
                var entry: [String: JSONValue] = ["path": .string(issue.instancePath.description), "message": .string(issue.message)]
                if let service = issue.service { entry["service"] = .string(service) }
                if let index = issue.index { entry["index"] = .integer(index) }
                return .object(entry)
            })
        }
        return .object(object)
    }

    func response() -> Response {
        var response = Response.json(json, status: status, contentType: "application/problem+json")
        if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }
}

extension Response {
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, contentType: String = "application/json",
                     headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = contentType
        var bytes = value.serializedBytes()
        bytes.append(0x0A)
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Turns every error into problem+json, including the router's own 404 and the names it lets
/// through malformed (`%2F`, `..`): a malformed service name is 400, an unknown one 404.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            // Mapped in a synchronous function: what it needs does not sit in this frame, which every
            // request (a long-poll for its whole wait) holds in its task's memory.
            return Self.response(for: error, request: request, logger: context.logger)
        }
    }

    static func response(for error: any Error, request: Request, logger: Logger) -> Response {
        switch error {
        case let problem as Problem:
            return problem.response()
        case let error as ConfbusError:
            return Problem(error).response()
        case let error as HTTPError:
            if error.status == .notFound, let name = Self.serviceSegment(request.uri.path), !ServiceName.isValid(name) {
                return Problem(.badRequest, code: "invalid_name", detail: "invalid service name in the URL").response()
            }
            // The router has no route for this method; when the path has others, that is 405 with
            // the methods it does have (RFC 9110 §15.5.6), not 404.
            if error.status == .notFound, let allowed = OpenAPIDocument.methods(at: request.uri.path), !allowed.isEmpty,
               !allowed.contains(request.method.rawValue) {
                var response = Problem(.methodNotAllowed, code: "method_not_allowed",
                                       detail: "\(request.method.rawValue) is not allowed here; allowed: \(allowed.joined(separator: ", "))").response()
                response.headers[.allow] = allowed.joined(separator: ", ")
                return response
            }
            return Problem(error.status, code: error.status == .notFound ? "not_found" : "http_error",
                           detail: error.body ?? error.status.reasonPhrase).response()
        case is NIOTooManyBytesError:
            return Problem(.contentTooLarge, code: "document_too_large", detail: "the body is larger than max_document_bytes").response()
        default:
            // What reaches here comes from storage (the driver's errors stay inside its adapter's
            // types): the database did not answer in time or failed. That is 503, never 500.
            logger.error("request failed on the database", metadata: ["error.type": "\(type(of: error))"])
            var response = Problem(.serviceUnavailable, code: "store_unavailable", detail: "the database did not answer; retry").response()
            response.headers[.retryAfter] = "1"
            return response
        }
    }

    /// The service segment of `/v1/config/<s>…`, `/v1/services/<s>…` or `/v1/schemas/<s>`, decoded once.
    static func serviceSegment(_ path: String) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[1] == "v1", ["config", "services", "schemas"].contains(parts[2]) else { return nil }
        return String(parts[3]).removingPercentEncoding ?? String(parts[3])
    }
}
