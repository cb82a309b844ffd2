# Runs at install time (install(CODE) in lib/CMakeLists.txt): writes flowpool.pc naming the prefix
# actually installed to, so `cmake --install <build> --prefix <p>` gets a .pc file that says <p>
# (CMAKE_INSTALL_PREFIX is that prefix here; with DESTDIR it stays the final prefix, as it should).
# In: FLOWPOOL_PC_IN, FLOWPOOL_PC_OUT, FLOWPOOL_PC_INCLUDEDIR and FLOWPOOL_PC_LIBDIR (as
# GNUInstallDirs gave them: relative to the prefix, or absolute), FLOWPOOL_PC_VERSION,
# FLOWPOOL_PC_DESCRIPTION.
set(FLOWPOOL_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
foreach(kind INCLUDEDIR LIBDIR)
  if(IS_ABSOLUTE "${FLOWPOOL_PC_${kind}}")
    set(FLOWPOOL_PC_${kind}_PATH "${FLOWPOOL_PC_${kind}}")
  else()
    set(FLOWPOOL_PC_${kind}_PATH "\${prefix}/${FLOWPOOL_PC_${kind}}")
  endif()
endforeach()
configure_file("${FLOWPOOL_PC_IN}" "${FLOWPOOL_PC_OUT}" @ONLY)
