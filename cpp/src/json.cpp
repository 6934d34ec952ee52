// Minimal bounded JSON (see json.hpp): a recursive-descent parser with an explicit depth limit.
#include "json.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <system_error>
#include <unordered_set>

namespace kancore::json {
namespace {

class Parser {
 public:
  Parser(std::string_view s, const Limits& lim) : s_(s), lim_(lim) {}

  Value document() {
    if (s_.size() > lim_.max_bytes) {
      throw std::invalid_argument("kancore: JSON of " + std::to_string(s_.size()) +
                                  " bytes exceeds the limit of " + std::to_string(lim_.max_bytes));
    }
    check_utf8();
    ws();
    Value v = value(0);
    ws();
    if (p_ != s_.size()) err("expected the end of the JSON text");
    return v;
  }

 private:
  [[noreturn]] void err(const std::string& what) const {
    throw std::invalid_argument("kancore: bad JSON at byte " + std::to_string(p_) + ": " + what);
  }
  bool at_end() const { return p_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[p_]; }
  void ws() {
    while (!at_end() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r')) ++p_;
  }
  void expect(char c) {
    if (peek() != c || at_end()) err(std::string("expected '") + c + "'");
    ++p_;
  }
  void literal(std::string_view word) {
    if (s_.substr(p_, word.size()) != word) err("expected a JSON value");
    p_ += word.size();
  }

  // RFC 8259 text is UTF-8: refuse ill-formed sequences (overlong forms, surrogates, code points
  // past U+10FFFF, truncated sequences) anywhere in the document, as Python's reader does.
  void check_utf8() const {
    const auto* b = reinterpret_cast<const unsigned char*>(s_.data());
    const std::size_t n = s_.size();
    for (std::size_t i = 0; i < n;) {
      const unsigned c = b[i];
      if (c < 0x80) {
        ++i;
        continue;
      }
      std::size_t len;
      unsigned cp, min;
      if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
      else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
      else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
      else err_at(i, "invalid UTF-8");
      if (i + len > n) err_at(i, "truncated UTF-8 sequence");
      for (std::size_t j = 1; j < len; ++j) {
        if ((b[i + j] & 0xC0) != 0x80) err_at(i, "invalid UTF-8");
        cp = (cp << 6) | (b[i + j] & 0x3F);
      }
      if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) err_at(i, "invalid UTF-8");
      i += len;
    }
  }

  [[noreturn]] static void err_at(std::size_t at, const char* what) {
    throw std::invalid_argument(std::string("kancore: JSON: ") + what + " at byte " + std::to_string(at));
  }

  Value value(int depth) {
    if (depth > lim_.max_depth) err("nesting deeper than " + std::to_string(lim_.max_depth));
    if (++count_ > lim_.max_elements) err("more than " + std::to_string(lim_.max_elements) + " values");
    Value v;
    const char c = peek();
    if (at_end()) err("unexpected end");
    if (c == '{') {
      v.type = Value::Type::object;
      ++p_;
      ws();
      if (peek() == '}' && !at_end()) { ++p_; return v; }
      std::unordered_set<std::string> seen;  // linear, not quadratic, in hostile many-key objects
      for (;;) {
        ws();
        if (peek() != '"' || at_end()) err("expected a string key");
        std::string key = string();
        if (!seen.insert(key).second) err("duplicate key \"" + key + "\"");
        ws();
        expect(':');
        ws();
        v.keys.push_back(std::move(key));
        v.items.push_back(value(depth + 1));
        ws();
        if (peek() == ',' && !at_end()) { ++p_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Value::Type::array;
      ++p_;
      ws();
      if (peek() == ']' && !at_end()) { ++p_; return v; }
      for (;;) {
        ws();
        v.items.push_back(value(depth + 1));
        ws();
        if (peek() == ',' && !at_end()) { ++p_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Value::Type::string;
      v.text = string();
      return v;
    }
    if (c == 't') { literal("true"); v.type = Value::Type::boolean; v.boolean = true; return v; }
    if (c == 'f') { literal("false"); v.type = Value::Type::boolean; return v; }
    if (c == 'n') { literal("null"); return v; }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.type = Value::Type::number;
      v.text = number_text();
      return v;
    }
    err("expected a JSON value");
  }

  std::string number_text() {
    const std::size_t start = p_;
    auto digits = [&] {
      const std::size_t d0 = p_;
      while (!at_end() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      if (p_ == d0) err("expected a digit");
    };
    if (peek() == '-') ++p_;
    if (peek() == '0' && !at_end()) {
      ++p_;
    } else {
      digits();
    }
    if (peek() == '.' && !at_end()) { ++p_; digits(); }
    if ((peek() == 'e' || peek() == 'E') && !at_end()) {
      ++p_;
      if (peek() == '+' || peek() == '-') ++p_;
      digits();
    }
    if (p_ - start > 64) err("number literal longer than 64 characters");
    return std::string(s_.substr(start, p_ - start));
  }

  unsigned hex4() {
    if (s_.size() - p_ < 4) err("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[p_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else err("bad hex digit in \\u escape");
    }
    return v;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (at_end()) err("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[p_++]);
      if (c == '"') return out;
      if (c < 0x20) err("control character in a string");
      if (c != '\\') { out += static_cast<char>(c); continue; }
      if (at_end()) err("unterminated escape");
      const char e = s_[p_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(p_, 2) != "\\u") err("unpaired surrogate");
            p_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) err("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            err("unpaired surrogate");
          }
          utf8(out, cp);
          break;
        }
        default: err("bad escape");
      }
    }
  }

  std::string_view s_;
  Limits lim_;
  std::size_t p_ = 0;
  std::size_t count_ = 0;
};

[[noreturn]] void bad(std::string_view what, const char* expected) {
  throw std::invalid_argument("kancore: expected " + std::string(what) + " to be " + expected);
}

}  // namespace

const Value* Value::find(std::string_view key) const {
  if (type != Type::object) return nullptr;
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key) return &items[i];
  return nullptr;
}

Value parse(std::string_view text, const Limits& limits) { return Parser(text, limits).document(); }

std::uint64_t as_u64(const Value& v, std::string_view what) {
  if (v.type != Value::Type::number) bad(what, "a non-negative integer");
  std::uint64_t out = 0;
  const char* b = v.text.data();
  const char* e = b + v.text.size();
  const auto r = std::from_chars(b, e, out);
  if (r.ec != std::errc() || r.ptr != e) bad(what, "a non-negative integer below 2^64");
  return out;
}

double as_double(const Value& v, std::string_view what) {
  if (v.type != Value::Type::number) bad(what, "a number");
  double out = 0;
  const char* b = v.text.data();
  const char* e = b + v.text.size();
  const auto r = std::from_chars(b, e, out);
  if (r.ec != std::errc() || r.ptr != e || !std::isfinite(out)) bad(what, "a finite number");
  return out;
}

bool as_bool(const Value& v, std::string_view what) {
  if (v.type != Value::Type::boolean) bad(what, "true or false");
  return v.boolean;
}

const std::string& as_string(const Value& v, std::string_view what) {
  if (v.type != Value::Type::string) bad(what, "a string");
  return v.text;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string number(double v) {
  if (!std::isfinite(v)) throw std::invalid_argument("kancore: cannot write a non-finite number to JSON");
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace kancore::json
