import ConfbusEngine
import Testing

struct LeastRecentlyUsedTests {
    @Test func pastItsCapacityTheLeastRecentlyUsedGoFirst() {
        var table = LeastRecentlyUsed<Int, String>(capacity: 10)
        for n in 0..<10 { table.keep("\(n)", for: n) }
        // 0 and 1 are used again: the oldest uses are now 2, 3, ...
        #expect(table.use(0) == "0" && table.use(1) == "1")
        table.keep("10", for: 10)
        // Eleven over a capacity of ten: the least recently used tenth (one) and the one over go.
        #expect(table.count == 9)
        #expect(table.use(2) == nil && table.use(3) == nil)
        #expect(table.use(0) == "0" && table.use(1) == "1" && table.use(10) == "10")
        table.forget(10)
        table.forgetAll { $0 < 5 }
        #expect(table.count == 5 && table.use(4) == nil && table.use(9) == "9")
    }
}
