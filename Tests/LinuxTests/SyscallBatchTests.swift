import Testing

@testable import Linux

/// The machine code a batch of remote system calls runs as (it is exercised for real by
/// every dump and restore; this pins the encoding).
struct SyscallBatchTests {
  @Test func encodesArgumentsResultsAndTheClosingBreakpoint() {
    var batch = SyscallBatch()
    let open = batch.add(2, 0x1000, 0)  // open(0x1000, 0)
    batch.add(3, arguments: [.result(open)])  // close(result of open)
    let code = batch.code(results: 0x7000)
    let expected: [UInt8] =
      [0x48, 0xbf] + le(0x1000) + [0x48, 0xbe] + le(0)  // rdi, rsi
      + [0x48, 0xb8] + le(2) + [0x0f, 0x05] + [0x48, 0xa3] + le(0x7000)  // rax = 2; syscall; [0x7000] = rax
      + [0x48, 0xa1] + le(0x7000) + [0x48, 0x89, 0xc7]  // rax = [0x7000]; rdi = rax
      + [0x48, 0xb8] + le(3) + [0x0f, 0x05] + [0x48, 0xa3] + le(0x7008)
      + [0xcc]
    #expect(code == expected)
    #expect(code.count <= SyscallBatch.maximumCodeSize(calls: 2))
  }

  func le(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}
