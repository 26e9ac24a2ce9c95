import ConfbusCore
import ConfbusEngine

/// The reads one caller may make (CONTRACT.md §6c): a service outside a scoped token's list does
/// not exist for it. Every read route goes through this view, so an out-of-scope service gets the
/// same answer as a missing one on every path — the same 404 and detail, a long-poll that waits
/// out its timeout — and lists leave it out, instead of a 403 that would confirm it exists.
struct VisibleReads: Sendable {
    let reads: ConfigReads
    let caller: Caller?

    init(_ reads: ConfigReads, for caller: Caller?) {
        self.reads = reads
        self.caller = caller
    }

    func sees(_ service: ServiceName) -> Bool { caller?.mayRead(service) ?? true }

    var isAdmin: Bool {
        if case .admin? = caller { return true }
        return false
    }

    func latest(_ service: ServiceName) -> StoredVersion? { sees(service) ? reads.latest(service) : nil }

    var all: [StoredVersion] { reads.all.filter { sees($0.service) } }

    func version(_ service: ServiceName, _ number: Int) async throws -> StoredVersion? {
        sees(service) ? try await reads.version(service, number) : nil
    }

    /// For a service the caller may not see, the wait a missing service gets: nothing comes.
    func wait(for service: ServiceName, after: Int, timeout: Duration) async -> StoredVersion? {
        guard sees(service) else {
            try? await Task.sleep(for: timeout)
            return nil
        }
        return await reads.wait(for: service, after: after, timeout: timeout)
    }

    func history(_ service: ServiceName, limit: Int, before: Int?) async throws -> [StoredVersion] {
        sees(service) ? try await reads.history(service, limit: limit, before: before) : []
    }

    func instances(_ service: ServiceName) async throws -> [InstanceRecord] {
        sees(service) ? try await reads.instances(service) : []
    }

    func instanceCounts() async throws -> [ServiceName: (total: Int, lagging: Int)] {
        try await reads.instanceCounts().filter { sees($0.key) }
    }

    func divergedServices() async throws -> [ServiceName: Divergence] {
        try await reads.divergedServices().filter { sees($0.key) }
    }

    /// Which layer and source set each value of a version (nil: none stored, or not seen).
    func layers(_ service: ServiceName, version: Int) async throws -> JSONValue? {
        sees(service) ? try await reads.layers(service, version: version) : nil
    }

    /// The override layer in force for the service's latest version (nil: none, or not seen).
    func overrideLayer(_ service: ServiceName) async throws -> JSONValue? {
        sees(service) ? try await reads.overrideLayer(service) : nil
    }

    var invalidServices: [ServiceName: [ConfbusError]] { reads.invalidServices.filter { sees($0.key) } }

    func schema(_ service: ServiceName) async -> JSONValue? { sees(service) ? await reads.schema(service) : nil }

    /// The secrets of `service` this caller sees masked (CONTRACT §6c): nil for an admin and for a
    /// token scoped to the service (the service itself), and when the schema marks nothing secret.
    func masking(_ service: ServiceName) async -> Redaction? {
        if caller?.seesSecrets(of: service) == true { return nil }
        let redaction = await reads.redaction(service)
        return redaction.isEmpty ? nil : redaction
    }
}
