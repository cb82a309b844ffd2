# Defines the imported target flowpool::hiredis from Debian's libhiredis-dev (HiredisConfig.cmake,
# which sets only variables), falling back to pkg-config. Used by lib/redis/CMakeLists.txt and by the
# installed flowpoolConfig.cmake (component redis); sets flowpool_hiredis_FOUND.
include_guard(GLOBAL)
set(flowpool_hiredis_FOUND FALSE)
if(NOT TARGET flowpool::hiredis)
  # A version is required: Debian's HiredisConfigVersion.cmake fails without one (0.14.1, bookworm).
  find_package(Hiredis 0.14 CONFIG QUIET)
  if(HIREDIS_INCLUDE_DIRS AND HIREDIS_LIBRARIES)
    add_library(flowpool::hiredis INTERFACE IMPORTED GLOBAL)
    set_target_properties(flowpool::hiredis PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${HIREDIS_INCLUDE_DIRS}"
                                                       INTERFACE_LINK_LIBRARIES "${HIREDIS_LIBRARIES}")
  else()
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(flowpool_pc_hiredis QUIET IMPORTED_TARGET GLOBAL hiredis)
      if(flowpool_pc_hiredis_FOUND)
        add_library(flowpool::hiredis INTERFACE IMPORTED GLOBAL)
        set_target_properties(flowpool::hiredis PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::flowpool_pc_hiredis)
      endif()
    endif()
  endif()
endif()
if(TARGET flowpool::hiredis)
  set(flowpool_hiredis_FOUND TRUE)
endif()
