# SK_API_FUNCTIONS: the functions declared in sparsekit.h (its comments
# stripped), the one list of what the installed library defines as global.
# Used by export_map.cmake (shared), localize.cmake (static) and
# symbols_test.cmake (the ctest that checks both); include() it with
# SK_HEADER_FILE set to the header.
file(READ ${SK_HEADER_FILE} _sk_header)
string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" _sk_header "${_sk_header}")  # comments
string(REGEX MATCHALL "sk_[a-z0-9_]+[ ]*\\(" _sk_calls "${_sk_header}")
set(SK_API_FUNCTIONS "")
foreach(call ${_sk_calls})
  string(REGEX REPLACE "[ (]" "" fn "${call}")
  list(APPEND SK_API_FUNCTIONS ${fn})
endforeach()
list(REMOVE_DUPLICATES SK_API_FUNCTIONS)
list(SORT SK_API_FUNCTIONS)
list(LENGTH SK_API_FUNCTIONS SK_API_COUNT)
if(SK_API_COUNT LESS 20)
  message(FATAL_ERROR "api_functions.cmake found only ${SK_API_COUNT} functions in ${SK_HEADER_FILE}")
endif()
unset(_sk_header)
unset(_sk_calls)
