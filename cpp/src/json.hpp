// A minimal JSON reader and writer (internal), written for the model file header: bounded
// (input size, nesting depth, element count), strict (RFC 8259 syntax, duplicate keys
// rejected), and keeps number text so integers parse exactly. Errors throw
// std::invalid_argument with the byte position.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kancore::json {

struct Value {
  enum class Type { null, boolean, number, string, array, object };
  Type type = Type::null;
  bool boolean = false;
  std::string text;  // string contents, or a number's literal text
  std::vector<Value> items;       // array elements, or object member values
  std::vector<std::string> keys;  // object member names (keys[i] names items[i]), in file order

  const Value* find(std::string_view key) const;  // object member or null
  bool is(Type t) const { return type == t; }
};

struct Limits {
  std::size_t max_bytes = std::size_t{16} << 20;
  int max_depth = 16;
  std::size_t max_elements = 1u << 20;  // values in the whole document
};

Value parse(std::string_view text, const Limits& limits = {});

// Exact conversions; throw std::invalid_argument when the value is not one.
std::uint64_t as_u64(const Value& v, std::string_view what);  // non-negative integer literal
double as_double(const Value& v, std::string_view what);      // any finite number
bool as_bool(const Value& v, std::string_view what);
const std::string& as_string(const Value& v, std::string_view what);

// Writer helpers.
std::string quote(std::string_view s);     // a JSON string literal
std::string number(double v);              // shortest text that reads back to v (finite)

}  // namespace kancore::json
