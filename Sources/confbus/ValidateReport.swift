import ConfbusCore
import ConfbusEngine

/// How `confbus validate` prints a tree's report, for people (`text`) and for pipelines (`json`).
enum ValidateReport {
    static func text(_ report: TreeResolver.Report, explain: Bool) -> String {
        var out = ""
        for error in report.treeErrors { out += "error: \(error)\n" }
        for resolution in report.resolutions {
            if let resolved = resolution.resolved {
                out += "ok     \(resolution.service)  \(resolved.checksum)\n"
            } else {
                for error in resolution.errors { out += "error  \(line(error))\n" }
            }
            if explain, let merged = resolution.merged {
                let provenance = merged.provenance
                for (pointer, value) in merged.config.leaves() {
                    let where_ = provenance[pointer].map(describe) ?? "?"
                    out += "         \(pointer.tokens.isEmpty ? "/" : pointer.description) = \(value.serialized())  ← \(where_)\n"
                }
            }
        }
        let invalid = report.resolutions.filter { !$0.errors.isEmpty }.count
        out += "\(report.resolutions.count) services: \(report.resolutions.count - invalid) valid, \(invalid) invalid"
        if !report.treeErrors.isEmpty { out += ", \(report.treeErrors.count) tree errors" }
        out += "\n"
        return out
    }

    static func line(_ error: ConfbusError) -> String {
        var parts: [String] = []
        if let service = error.service { parts.append(service) }
        if let location = error.location { parts.append(location.description) }
        parts.append(error.message)
        if let issue = error.issues.first { parts.append("[schema \(issue.keywordPath)]") }
        return parts.joined(separator: ": ")
    }

    static func describe(_ p: Provenance) -> String {
        switch p.layer {
        case .schemaDefault: "schema default"
        case .variable: "variable \(p.source)"
        case .override: "ops override"
        case .defaults, .environment: "\(p.layer) \(p.location?.description ?? p.source)"
        }
    }

    static func json(_ report: TreeResolver.Report, explain: Bool) -> JSONValue {
        var documents: [JSONValue] = []
        for resolution in report.resolutions {
            guard let resolved = resolution.resolved, case .object(var document) = resolved.document() else { continue }
            if explain {
                var sources: [String: JSONValue] = [:]
                for (pointer, p) in resolved.provenance {
                    var entry: [String: JSONValue] = ["layer": .string(p.layer.description), "source": .string(p.source)]
                    if let l = p.location { entry["line"] = .integer(l.line); entry["column"] = .integer(l.column) }
                    sources[pointer.description] = .object(entry)
                }
                document["sources"] = .object(sources)
            }
            documents.append(.object(document))
        }
        let errors: [JSONValue] = report.errors.map { error in
            var entry: [String: JSONValue] = ["code": .string(error.code.description), "message": .string(error.message)]
            if let service = error.service { entry["service"] = .string(service) }
            if let l = error.location {
                entry["file"] = .string(l.file); entry["line"] = .integer(l.line); entry["column"] = .integer(l.column)
            }
            if let issue = error.issues.first {
                entry["path"] = .string(issue.instancePath.description)
                entry["keyword"] = .string(issue.keywordPath.description)
            }
            return .object(entry)
        }
        return .object([
            "valid": .bool(report.isValid),
            "documents": .array(documents),
            "errors": .array(errors),
            "warnings": .array(report.warnings.map(JSONValue.string)),
        ])
    }
}
